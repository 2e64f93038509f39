"""A user's own network as a TREND Lab model: pixels in [0, 1] -> logits, with normalization and an optional
non-differentiable input transform whose gradient is approximated by BPDA (Athalye et al. 2018), in the manner
of advertorch's ``BPDAWrapper``.

Every attack and ``run_transfer`` take any ``nn.Module`` that maps pixels in [0, 1] to logits; this wrapper makes
one from a network that expects normalized inputs, and lets a defence such as bit-depth reduction or JPEG run in
the forward pass while the attacks see the gradient of ``backward`` (by default the identity: straight-through).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

from trend_core.errors import TrendError

Transform = Callable[[torch.Tensor], torch.Tensor]


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


def bpda(x: torch.Tensor, transform: Transform, backward: Transform = identity) -> torch.Tensor:
    """``transform(x)`` in the forward pass, the gradient of ``backward(x)`` in the backward pass.

    ``transform`` may leave autograd (numpy, PIL, rounding): it runs on a detached copy.
    """
    with torch.no_grad():
        value = transform(x.detach())
    if not isinstance(value, torch.Tensor) or value.shape != x.shape:
        raise TrendError("The input transform must return a tensor of the input's shape.")
    approx = backward(x)
    return approx + (value.to(approx) - approx).detach()


class Preprocessed(nn.Module):
    """``model(normalize(transform(x)))`` for pixels x in [0, 1]; gradients through ``transform`` by BPDA.

    ``x`` is (B, C, H, W); ``mean`` / ``std`` have one value per channel.
    """

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        transform: Transform | None = None,
        backward: Transform | None = None,
    ):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TrendError(f"with_preprocessing wraps a torch nn.Module, got {type(model).__name__}.")
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean_t.shape != std_t.shape or bool((std_t <= 0).any()):
            raise TrendError("mean and std need one value per channel each, and every std must be positive.")
        if transform is not None and not callable(transform):
            raise TrendError("transform must be a function of the image batch.")
        if backward is not None and not callable(backward):
            raise TrendError("backward must be a differentiable function of the image batch (BPDA).")
        self.model = model
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)
        self.transform = transform
        self.backward_approx = backward or identity
        self.name = str(getattr(model, "name", None) or type(model).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transform is not None:
            x = bpda(x, self.transform, self.backward_approx)
        return self.model((x - self.mean) / self.std)

    def extra_repr(self) -> str:
        transform = getattr(self.transform, "__name__", repr(self.transform))
        return f"transform={transform}, backward={getattr(self.backward_approx, '__name__', 'custom')}"


def with_preprocessing(
    model: nn.Module,
    mean: Sequence[float],
    std: Sequence[float],
    transform: Transform | None = None,
    backward: Transform | None = None,
) -> Preprocessed:
    """``model`` (which expects normalized inputs) as a pixels-in [0, 1] model for every attack and transfer run.

    ``transform``: an input defence applied to the pixels first, differentiable or not (rounding, JPEG);
    ``backward``: the differentiable approximation of it used for gradients (BPDA; default: the identity).

    >>> wrapped = with_preprocessing(resnet, mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26],   # doctest: +SKIP
    ...                              transform=lambda x: torch.round(x * 7) / 7)
    >>> PGD(eps=8 / 255)(wrapped, x, y).success.float().mean()                                    # doctest: +SKIP
    """
    return Preprocessed(model, mean, std, transform, backward)
