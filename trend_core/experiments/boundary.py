"""Decision-boundary slices: the class of every point of a 2-D grid around one image.

x axis: the normalized (unit L2) input gradient of the reference model's loss at the image, the direction PGD
climbs; y axis: a seeded random direction orthogonal to it. Offsets are L2 lengths in pixel space; grid images
are clipped to [0, 1] (what a model can be shown). The grid is classified in batches under inference_mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from trend_core.attacks.base import attack_mode, model_device, predict
from trend_core.attacks.pgd import input_gradient
from trend_core.config.datasets import get_info
from trend_core.config.labels import model_labels
from trend_core.data.image_checks import check_images
from trend_core.errors import TrendError

DIRECTIONS = ("+x", "-x", "+y", "-y")


@dataclass
class BoundarySlice:
    """Classes over a grid around one image for one or several models.

    ``classes[name]`` has shape (len(y_offsets), len(x_offsets)) (rows = y); the image sits at offset (0, 0),
    the centre cell. ``distances[name][d]`` is the offset of the first grid point along axis direction d
    ("+x", "-x", "+y", "-y") whose class differs from the centre's, or None when none is within the span.
    """

    x_offsets: np.ndarray
    y_offsets: np.ndarray
    classes: dict[str, np.ndarray]
    clean_pred: dict[str, int]
    distances: dict[str, dict[str, float | None]]
    label: int
    image: np.ndarray
    x_direction: np.ndarray
    y_direction: np.ndarray
    reference: str

    @property
    def names(self) -> list[str]:
        return list(self.classes)

    def centre_class(self, name: str) -> int:
        grid = self.classes[name]
        return int(grid[grid.shape[0] // 2, grid.shape[1] // 2])

    def distance_frame(self) -> pd.DataFrame:
        """One row per model: clean prediction and the distance to the nearest boundary per axis direction."""
        rows = [{"model": n, "clean_pred": self.clean_pred[n], **self.distances[n]} for n in self.names]
        return pd.DataFrame(rows).set_index("model")


def decision_boundary(
    models: nn.Module | Sequence[nn.Module],
    image: torch.Tensor,
    label: int,
    span: float | None = None,
    resolution: int = 41,
    seed: int = 0,
    names: Sequence[str] | None = None,
    reference: int = 0,
    batch_size: int = 1024,
) -> BoundarySlice:
    """Classify a (resolution x resolution) grid of ``image + a u + b v`` (a, b in [-span, span]) for every model.

    u = the unit input gradient of ``models[reference]`` at (image, label); v = a random unit direction
    (``seed``) orthogonal to u. ``span`` defaults to twice the L2 length of the dataset's default L-inf eps
    ball corner (2 eps sqrt(d)). ``resolution`` must be odd so the image itself is a grid point.
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise TrendError("Give one or more models (torch nn.Modules, pixels in [0, 1] -> logits).")
    if names is None:
        names = model_labels(models)
    names = [str(n) for n in names]
    if len(names) != len(models) or len(set(names)) != len(names):
        raise TrendError("Give one distinct name per model.")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 3 or resolution % 2 == 0:
        raise TrendError(
            f"The grid resolution must be an odd whole number >= 3 (so the image is a grid point), got {resolution!r}."
        )
    if isinstance(reference, bool) or not isinstance(reference, int) or not 0 <= reference < len(models):
        raise TrendError(f"The reference model index must be in 0..{len(models) - 1}, got {reference!r}.")
    x = torch.as_tensor(image).detach()
    if x.dim() == 4 and len(x) == 1:
        x = x[0]
    if x.dim() != 3:
        raise TrendError(f"decision_boundary takes one (C, H, W) image, got shape {tuple(x.shape)}.")
    try:
        label_t = torch.as_tensor(label).reshape(1)
    except (TypeError, ValueError, RuntimeError):
        raise TrendError(f"label must be one class number, got {label!r}.") from None
    images, label_t = check_images(
        x.unsqueeze(0), label_t, models, argument="image", label_argument="label", one_image=True
    )
    x = images[0]
    if span is None:
        span = 2 * _default_eps(models[reference]) * math.sqrt(x.numel())
    if not (isinstance(span, (int, float)) and math.isfinite(span) and span > 0):
        raise TrendError(f"The span must be a positive number, got {span!r}.")

    ref = models[reference]
    device = model_device(ref)
    xb = x.unsqueeze(0).to(device)
    yb = label_t.to(device)
    with attack_mode(ref):
        grad = input_gradient(ref, xb, yb)[0]
    u = _unit(grad.flatten())
    if u is None:
        raise TrendError(
            "The reference model's loss gradient is zero at this image, so it has no adversarial direction; "
            "pick another image or model."
        )
    v = _random_orthogonal(u, seed)
    half = resolution // 2
    offsets = torch.arange(-half, half + 1, dtype=torch.float32) * (float(span) / half)  # exact 0 at the centre
    b_grid, a_grid = torch.meshgrid(offsets, offsets, indexing="ij")  # rows = y offset, columns = x offset
    coeffs = torch.stack([a_grid.flatten(), b_grid.flatten()], dim=1).to(device)  # (R*R, 2)
    basis = torch.stack([u, v]).to(device)  # (2, d)
    classes, clean_pred, distances = {}, {}, {}
    for name, model in zip(names, models):
        grid = _classify(model, xb, coeffs, basis, batch_size).view(resolution, resolution).cpu().numpy()
        classes[name] = grid
        clean_pred[name] = _predict_one(model, xb)
        distances[name] = _axis_distances(grid, offsets.numpy())
    return BoundarySlice(
        offsets.numpy(),
        offsets.numpy(),
        classes,
        clean_pred,
        distances,
        int(label_t[0]),
        x.cpu().numpy(),
        u.view_as(x).cpu().numpy(),
        v.view_as(x).cpu().numpy(),
        names[reference],
    )


def _default_eps(model: nn.Module) -> float:
    dataset = getattr(getattr(model, "spec", None), "dataset", None)
    if dataset is None:
        raise TrendError("The model carries no dataset spec; give the grid's span.")
    return get_info(dataset).default_eps


def _unit(vector: torch.Tensor) -> torch.Tensor | None:
    norm = vector.norm()
    if not torch.isfinite(norm) or norm <= 1e-20:
        return None
    return vector / norm


def _random_orthogonal(u: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded random unit vector orthogonal to unit ``u`` (Gram-Schmidt; redrawn in the vanishing case)."""
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(8):
        r = torch.randn(u.numel(), generator=gen, dtype=torch.float64)
        u64 = u.detach().cpu().double()
        r = r - (r @ u64) * u64
        unit = _unit(r)
        if unit is not None:
            return unit.float().to(u.device)
    raise TrendError("Could not draw a direction orthogonal to the gradient (the image has a single pixel?).")


@torch.inference_mode()
def _classify(
    model: nn.Module, x: torch.Tensor, coeffs: torch.Tensor, basis: torch.Tensor, batch_size: int
) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(coeffs), batch_size):
            points = (x.flatten(1) + coeffs[i : i + batch_size] @ basis).clamp(0, 1).view(-1, *x.shape[1:])
            out.append(model(points).argmax(dim=1))
        return torch.cat(out)
    finally:
        model.train(was_training)


def _predict_one(model: nn.Module, x: torch.Tensor) -> int:
    return int(predict(model, x)[0])


def _axis_distances(grid: np.ndarray, offsets: np.ndarray) -> dict[str, float | None]:
    """Distance from the centre to the first cell of another class along +x, -x, +y and -y."""
    c = len(offsets) // 2
    centre = grid[c, c]
    lines = {"+x": grid[c, c + 1 :], "-x": grid[c, :c][::-1], "+y": grid[c + 1 :, c], "-y": grid[:c, c][::-1]}
    steps = offsets[c + 1 :]
    result: dict[str, float | None] = {}
    for direction in DIRECTIONS:
        changed = np.flatnonzero(lines[direction] != centre)
        result[direction] = float(steps[changed[0]]) if changed.size else None
    return result
