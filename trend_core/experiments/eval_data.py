"""The images and labels a run evaluates, from its ``data=`` argument: one meaning for every runner."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from trend_core.data.datasets import load_dataset
from trend_core.data.image_checks import check_images
from trend_core.errors import TrendError


def evaluation_data(
    models: Sequence[nn.Module], data: Any, split: str, limit: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels a run evaluates, from ``data``: None (the ``split`` of the models' common dataset),
    a dataset name (the same, checked against the models' dataset), a DatasetBundle, or an (x, y) pair of
    tensors; the first ``limit`` images, checked by ``check_images`` (finite pixels in [0, 1], labels among the
    models' classes, the models' image shape). Bad input raises a TrendError."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise TrendError(f"The image limit must be a positive whole number, got {limit!r}.")
    found = {getattr(getattr(m, "spec", None), "dataset", None) for m in models}
    datasets = {str(d) for d in found if d is not None}
    if isinstance(data, str):
        if datasets and datasets != {data}:
            raise TrendError(f"The models are {', '.join(sorted(datasets))} models, not {data} ones.")
        data = load_dataset(data)
    if data is None:
        if None in found:
            raise TrendError("Some models carry no spec, so their dataset is unknown; pass data=(x, y).")
        if len(datasets) > 1:
            raise TrendError(f"The models come from different datasets ({', '.join(sorted(datasets))}); pick one.")
        data = load_dataset(datasets.pop())
    if hasattr(data, "tensors") and callable(data.tensors):
        x, y = data.tensors(split, limit)
        return check_images(x, y, models, getattr(data, "info", None))
    try:
        x, y = data
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        count, labels = len(x), len(y)
    except (TypeError, ValueError, RuntimeError):
        raise TrendError(
            "data must be a dataset name, an (images, labels) pair of tensors or a DatasetBundle."
        ) from None
    if count != labels or count == 0:
        raise TrendError(f"data must hold the same positive number of images and labels, got {count} and {labels}.")
    return check_images(x[:limit], y[:limit], models)
