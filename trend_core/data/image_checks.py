"""One check of the images and labels a run is given, shared by every entry point (CLI and Python alike).

Every run (transfer, ensemble sweep, TM fit, audit, decision boundary) evaluates models on (x, y); a NaN
pixel, 8-bit pixels, labels outside the models' classes or images of the wrong shape would otherwise run for
minutes and either fail deep inside torch or quietly give a wrong TM. ``check_images`` refuses them first,
with one sentence that names the argument and says what to do.
"""

from __future__ import annotations

import weakref
from typing import Any, Sequence

import torch
import torch.nn as nn

from trend_core.config.datasets import DatasetInfo, get_info
from trend_core.config.labels import model_labels
from trend_core.data.datasets import as_float_images
from trend_core.errors import TrendError
from trend_core.runtime.devices import model_device

_TOLERANCE = 1e-6  # pixels a float rounding step outside [0, 1] still count as inside
# spec-less models already seen to take images of a shape (so a rerun costs no extra forward pass)
_FITS: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int | None]] = weakref.WeakKeyDictionary()


def check_images(
    x: Any,
    y: Any,
    models: Sequence[nn.Module] = (),
    info: DatasetInfo | None = None,
    argument: str = "data",
    label_argument: str | None = None,
    one_image: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` as float32 images in [0, 1] and long labels, or a TrendError naming ``argument``.

    Images are (N, ...) with finite pixels in [0, 1] (uint8 images count as 0..255 and are scaled); labels are N
    whole numbers, each a class of every model. Shapes and classes come from ``info``, a model's dataset
    spec, or (for a model without one) a forward pass on the first image. ``argument`` / ``label_argument``
    name the arguments in messages; ``one_image``: ``x`` is a single image given as a batch of one.
    """
    labels_name = label_argument or f"{argument}'s labels"
    x, y = _as_tensor(x, argument), _as_tensor(y, labels_name)
    if x.dim() < 2 or len(x) == 0:
        raise TrendError(
            f"{argument} must hold a batch of images (N, channels, height, width), got shape {tuple(x.shape)}."
        )
    images = _checked_pixels(x, argument, one_image)
    labels = _checked_labels(y, len(images), labels_name)
    names = model_labels(list(models))
    subject = (argument, "is") if one_image else (f"{argument}'s images", "are")
    limits = [_fit_of(m, images, subject, name) for m, name in zip(models, names)]
    if info is not None:
        limits.append((info.num_classes, f"the {info.name} dataset"))
    for classes, who in limits:
        if classes is not None and int(labels.max()) >= classes:
            bad = int(torch.nonzero(labels >= classes)[0])
            raise TrendError(
                f"{labels_name} must be classes 0..{classes - 1} of {who}, but {_which(labels, bad)}; "
                "give labels in that range."
            )
    return images, labels


def _which(labels: torch.Tensor, bad: int) -> str:
    """The offending label, and its image when there are several."""
    value = labels[bad].item()
    return f"image {bad} has label {value}" if len(labels) > 1 else f"it is {value}"


def _as_tensor(value: Any, argument: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value).detach()
    except (TypeError, ValueError, RuntimeError):
        raise TrendError(f"{argument} must be a tensor or an array of numbers, got {type(value).__name__}.") from None


def _checked_pixels(x: torch.Tensor, argument: str, one_image: bool) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return as_float_images(x)
    if not x.is_floating_point():
        raise TrendError(f"{argument} must hold float images with pixels in [0, 1] (or uint8 0..255), got {x.dtype}.")
    x = x.float()
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        count = int((~finite).sum())
        first = int(torch.nonzero(~finite.flatten(1).all(dim=1))[0])
        where = "" if one_image else f", the first in image {first}"
        raise TrendError(
            f"{argument} has {count} non-finite pixel{'s' if count > 1 else ''} (NaN or inf{where}); "
            "give pixels that are all numbers in [0, 1]."
        )
    low, high = float(x.min()), float(x.max())
    if low < -_TOLERANCE or high > 1 + _TOLERANCE:
        hint = "divide 8-bit images by 255" if high > 1 and high <= 255 and low >= 0 else "rescale them"
        raise TrendError(
            f"{argument}'s pixels range over [{low:g}, {high:g}], but models take pixels in [0, 1]; {hint}."
        )
    return x


def _checked_labels(y: torch.Tensor, count: int, argument: str) -> torch.Tensor:
    if y.dim() != 1 or len(y) != count:
        raise TrendError(f"{argument} must be one class per image ({count}), got shape {tuple(y.shape)}.")
    if y.dtype == torch.bool or y.is_complex():
        raise TrendError(f"{argument} must be whole class numbers, got {y.dtype}.")
    if y.is_floating_point():
        whole = torch.isfinite(y) & (y == y.round())
        if not bool(whole.all()):
            bad = int(torch.nonzero(~whole)[0])
            raise TrendError(f"{argument} must be whole class numbers, but {_which(y, bad)}.")
    labels = y.long()
    if int(labels.min()) < 0:
        bad = int(torch.nonzero(labels < 0)[0])
        raise TrendError(f"{argument} must be classes >= 0, but {_which(labels, bad)}.")
    return labels


def _fit_of(model: nn.Module, x: torch.Tensor, subject: tuple[str, str], who: str) -> tuple[int | None, str]:
    """(number of classes, how to name the model) after checking ``x``'s image shape fits it; ``subject``:
    how messages name the images, and its verb."""
    images, verb = subject
    spec = getattr(model, "spec", None)
    dataset = getattr(spec, "dataset", None)
    if dataset is not None:
        info, name = get_info(str(dataset)), str(getattr(spec, "name", who))
        if tuple(x.shape[1:]) != tuple(info.input_shape):
            raise TrendError(
                f"{images} {verb} {_shape(x.shape[1:])}, but {name} takes {dataset} images of "
                f"{_shape(info.input_shape)}; give images of that shape."
            )
        return info.num_classes, name
    key = (tuple(x.shape[1:]), str(model_device(model)))
    seen = _FITS.setdefault(model, {})
    if key in seen:
        return seen[key], who
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(x[:1].to(model_device(model)))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise TrendError(
            f"{images} ({_shape(x.shape[1:])}) cannot be fed to {who} ({reason}); give images of the shape it takes."
        ) from None
    finally:
        model.train(was_training)
    classes = int(logits.shape[-1]) if isinstance(logits, torch.Tensor) and logits.dim() == 2 else None
    seen[key] = classes
    return classes, who


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)
