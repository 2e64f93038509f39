"""A defender's own evaluation data as a dataset of its own: `trend data import NAME PATH` reads an image folder
(ImageFolder layout: one sub-folder per class) or an ``.npz`` with ``x`` and ``y``, checks it, and writes it under
``<data root>/user/NAME`` as uint8 images and a JSON description. Every page and command then takes NAME.

Imported data is evaluation data: all of it is the test split (models for it are imported, not trained here).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from trend_core.config.datasets import (
    USER_IMAGES,
    USER_INFO,
    DatasetInfo,
    check_user_dataset_name,
    user_dataset_folder,
)
from trend_core.errors import TrendError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_IMAGES = 200_000
MAX_SIDE = 512
MIN_PER_CLASS = 1
DEFAULT_EPS = 8 / 255  # CIFAR's convention; pass eps= for data where a grey level means more


def read_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(uint8 images N x C x H x W, labels, class names) from one sub-folder per class, classes sorted by name."""
    from PIL import Image, UnidentifiedImageError  # (Pillow comes with Streamlit and torchvision)

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise TrendError(
            f"{folder} needs one sub-folder per class (at least two), each holding that class's images; "
            f"found {len(classes)}."
        )
    images, labels, shape = [], [], None
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) < MIN_PER_CLASS:
            raise TrendError(f"The class folder {folder / name} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        for path in files:
            try:
                with Image.open(path) as img:
                    mode = "L" if img.mode in ("1", "L", "I;16", "I", "F") else "RGB"
                    array = np.asarray(img.convert(mode), dtype=np.uint8)
            except (UnidentifiedImageError, OSError):
                raise TrendError(f"{path} is not an image Pillow can read.") from None
            array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
            if shape is None:
                shape = array.shape
            elif array.shape != shape:
                raise TrendError(
                    f"{path} is {_shape_text(array.shape)} but the first image was {_shape_text(shape)}; "
                    "resize every image to one size first."
                )
            images.append(array)
            labels.append(label)
            if len(images) > MAX_IMAGES:
                raise TrendError(f"{folder} holds more than {MAX_IMAGES:,} images; import a sample of them.")
    return np.stack(images), np.asarray(labels, dtype=np.int64), tuple(classes)


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(uint8 images N x C x H x W, labels, class names) from an .npz with ``x`` (N,H,W / N,H,W,C / N,C,H,W; uint8
    0..255 or floats in [0, 1]) and ``y`` (whole numbers 0..K-1); optional ``classes`` (K names)."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise TrendError(f"{path.name} needs arrays named x (images) and y (labels); it has {sorted(arrays)}.")
            x, y = arrays["x"], arrays["y"]
            names = tuple(str(c) for c in arrays["classes"]) if "classes" in arrays else ()
    except TrendError:
        raise
    except ValueError:
        raise TrendError(
            f"{path.name} holds Python objects (a pickle), which could run code; save plain arrays."
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError):
        raise TrendError(f"{path.name} is not a readable .npz file (numpy.savez).") from None
    return _as_uint8_nchw(x, path.name), _labels(y, len(x), path.name), names


def _shape_text(shape: tuple) -> str:
    return "x".join(str(s) for s in shape)


def _as_uint8_nchw(x: np.ndarray, shown: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise TrendError(
            f"{shown}'s x is shaped {x.shape}; give N x H x W, N x H x W x C or N x C x H x W (C = 1 or 3)."
        )
    if not 2 <= x.shape[2] <= MAX_SIDE or not 2 <= x.shape[3] <= MAX_SIDE:
        raise TrendError(f"{shown}'s images are {x.shape[2]}x{x.shape[3]} pixels; 2 to {MAX_SIDE} a side are accepted.")
    if len(x) > MAX_IMAGES:
        raise TrendError(f"{shown} holds more than {MAX_IMAGES:,} images; import a sample of them.")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise TrendError(f"{shown}'s x holds {x.dtype} values; give uint8 0..255 or floats in [0, 1].")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise TrendError(f"{shown}'s x holds NaN or infinite values.")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        hint = " (divide by 255)" if high <= 255 and low >= 0 else ""
        raise TrendError(f"{shown}'s x holds values in [{low:g}, {high:g}]; give floats in [0, 1]{hint} or uint8.")
    return np.round(x * 255).astype(np.uint8)


def _labels(y: np.ndarray, count: int, shown: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != count:
        raise TrendError(f"{shown} has {count} images but {len(y)} labels.")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)))):
        raise TrendError(f"{shown}'s labels y must be whole numbers 0..K-1, got {y.dtype}.")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise TrendError(f"{shown}'s labels y must be whole numbers from 0, got {int(y.min())}.")
    missing = sorted(set(range(int(y.max()) + 1)) - set(y.tolist()))
    if missing or y.max() < 1:
        raise TrendError(
            f"{shown}'s labels must cover 0..K-1 with at least two classes; "
            + (f"no image has label {missing[0]}." if missing else "every image has label 0.")
        )
    return y


def import_dataset(
    name: str,
    source: str | os.PathLike,
    root: str | os.PathLike | None = None,
    eps: float | None = None,
    replace: bool = False,
) -> DatasetInfo:
    """Check ``source`` (image folder or .npz) and store it as the dataset ``name`` under the data root."""
    check_user_dataset_name(name)
    source = Path(source).expanduser()
    if source.is_dir():
        x, y, names = read_image_folder(source)
    elif source.is_file() and source.suffix.lower() == ".npz":
        x, y, names = read_npz(source)
    elif source.exists():
        raise TrendError(f"{source} is neither an image folder nor an .npz file.")
    else:
        raise TrendError(f"No such file or folder: {source}.")
    classes = int(y.max()) + 1
    if names and len(names) != classes:
        raise TrendError(f"{source.name} names {len(names)} classes but its labels use {classes}.")
    eps = DEFAULT_EPS if eps is None else float(eps)
    if not 0 < eps < 1:
        raise TrendError(f"The default eps must be in (0, 1) (pixels in [0, 1]), got {eps}.")
    folder = user_dataset_folder(name, root)
    if folder.exists() and not replace:
        raise TrendError(f"A dataset named {name!r} is already imported ({folder}); pass --replace to overwrite it.")
    channels = int(x.shape[1])
    info = DatasetInfo(
        name,
        classes,
        (channels, int(x.shape[2]), int(x.shape[3])),
        (0.0,) * channels,
        (1.0,) * channels,
        eps,
        (eps / 8, eps * 2),
        names or tuple(f"class{i}" for i in range(classes)),
    )
    _write_atomically(folder, x, y, info, str(source))
    return info


def _write_atomically(folder: Path, x: np.ndarray, y: np.ndarray, info: DatasetInfo, source: str) -> None:
    """Write the dataset to a temporary folder beside ``folder`` and rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, x=x, y=y)
        (staging / USER_IMAGES).write_bytes(buffer.getvalue())
        description = {**info.__dict__, "source": source, "images": int(len(y))}
        (staging / USER_INFO).write_text(json.dumps(description, indent=1))
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            staging.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(folder)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise TrendError(f"Could not write the dataset into {folder.parent} ({exc.strerror or exc}).") from None
