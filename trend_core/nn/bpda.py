"""A choice of backward pass (BPDA) for a model's non-differentiable input transform, made at attack time.

A zoo model's input quantization or halftoning computes its exact forward value and passes gradients through
a fixed substitute (the authors' 0.5*sigmoid(filter)+0.5 for HT, the identity for Qn and HT-FS). An audit must
not trust that one choice (Athalye et al. 2018), so ``with_backward(model, mode)`` returns a model with the
same forward pass and another backward:

    substitute   the model's own substitute (the model itself is returned)
    identity     straight-through: the transform's output moves exactly as its (normalized) input does
    smooth       a differentiable approximation of the transform: a sharp sigmoid of HT's filter response,
                 a soft staircase of sigmoids for Qn with at most 4 bits (the identity above that, where the
                 staircase is already fine-grained), the identity for HT-FS

The forward value always comes from the model's own transform, so which images an attack fools is unchanged.
"""

from __future__ import annotations

import threading
import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F

from trend_core.errors import TrendError
from trend_core.nn.build import Preprocess, TrendModel
from trend_core.nn.quant import HALFTONE_KERNEL, Halftone, InputQuantizer
from trend_core.nn.vote import MajorityVote

BACKWARD_MODES = ("substitute", "identity", "smooth")
DEFAULT_BACKWARD = "substitute"
HALFTONE_TEMPERATURE = 0.25  # sigmoid(filter / T): sharper than the authors' 0.5*sigmoid(filter)+0.5
STAIRCASE_TEMPERATURE = 0.2  # of one bin width: each soft step spans about a fifth of its bin
STAIRCASE_MAX_BITS = 4

_lock = threading.RLock()  # re-entered: wrapping a vote wraps its members
_wrapped: weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Module]] = weakref.WeakKeyDictionary()


def check_backward(mode: str) -> str:
    """A backward mode name (substitute, identity, smooth), or a TrendError naming the choices."""
    key = str(mode).strip().lower()
    if key not in BACKWARD_MODES:
        raise TrendError(f"Unknown backward pass {mode!r}; choose one of {', '.join(BACKWARD_MODES)}.")
    return key


def input_transform(model: nn.Module) -> str:
    """The input transform of a zoo model: 'FP', 'Qn', 'HT' or 'HT-FS' ('FP' for anything else)."""
    preprocess = getattr(model, "preprocess", None)
    if isinstance(preprocess, BackwardChoice):
        preprocess = preprocess.inner
    return getattr(preprocess, "input_quant", "FP") if isinstance(preprocess, Preprocess) else "FP"


def backward_differs(model: nn.Module, mode: str) -> bool:
    """Whether ``mode`` gives ``model`` (or any member of an ensemble) another backward pass than its own."""
    mode = check_backward(mode)
    members = getattr(model, "members", None)
    if members is not None:
        return any(backward_differs(m, mode) for m in members)
    transform = input_transform(model)
    if mode == "substitute" or transform == "FP":
        return False
    if transform == "HT":
        return True  # its own substitute is neither the identity nor the sharper sigmoid
    if transform == "HT-FS":
        return False  # its substitute is the identity, and so is its smooth pass
    return mode == "smooth" and int(transform[1:]) <= STAIRCASE_MAX_BITS


def with_backward(model: nn.Module, mode: str) -> nn.Module:
    """``model`` with the backward pass ``mode`` through its input transform (the same forward values).

    A majority-vote ensemble gets each member wrapped (same seed and names). Wrappers are cached per model,
    so attacks reuse one wrapper (and its inference twin); the model itself is returned when nothing changes.
    """
    mode = check_backward(mode)
    if isinstance(model, MajorityVote):
        if not backward_differs(model, mode):
            return model
        return _cached(
            model, mode, lambda: MajorityVote([with_backward(m, mode) for m in model.members], model.seed, model.names)
        )
    if not backward_differs(model, mode) or not isinstance(model, TrendModel):
        return model
    return _cached(model, mode, lambda: TrendModel(BackwardChoice(model.preprocess, mode), model.net, model.spec))


def _cached(model: nn.Module, mode: str, build) -> nn.Module:
    with _lock:
        per_model = _wrapped.setdefault(model, {})
        if mode not in per_model:
            per_model[mode] = build()
        return per_model[mode]


class BackwardChoice(nn.Module):
    """A model's ``Preprocess`` with another backward pass: forward values from ``inner``, gradients by ``mode``."""

    def __init__(self, inner: Preprocess, mode: str):
        super().__init__()
        self.inner = inner
        self.mode = check_backward(mode)

    @property
    def input_quant(self) -> str:
        return self.inner.input_quant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "substitute":
            return self.inner(x)
        z = (x - self.inner.mean) / self.inner.std
        with torch.no_grad():
            exact = self.inner.quant(z.detach())
        surrogate = z if self.mode == "identity" else smooth_approximation(self.inner.quant, z)
        return exact + (surrogate - surrogate.detach())

    def extra_repr(self) -> str:
        return f"backward={self.mode}"


def smooth_approximation(transform: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """A differentiable stand-in for ``transform`` on normalized inputs ``z`` (its gradient is what counts)."""
    if isinstance(transform, Halftone):
        return smooth_halftone(z, transform.channels)
    if isinstance(transform, InputQuantizer) and transform.bits <= STAIRCASE_MAX_BITS and not transform.per_batch:
        return soft_staircase(z, transform.bits, transform.lo, transform.hi)
    return z


def smooth_halftone(z: torch.Tensor, channels: int) -> torch.Tensor:
    """sigmoid(filter / T) of the authors' halftone filter response, with each image normalized by its mean
    and range over all of (C, H, W) as the authors' code does."""
    mean = z.mean(dim=(1, 2, 3), keepdim=True)
    spread = (z.amax(dim=(1, 2, 3), keepdim=True) - z.amin(dim=(1, 2, 3), keepdim=True)).clamp_min(1e-6)
    kernel = HALFTONE_KERNEL.to(z.device, z.dtype).expand(channels, 1, 3, 3)
    filtered = F.conv2d((z - mean) / spread, kernel, padding=1, groups=channels) + 1e-3
    return torch.sigmoid(filtered / HALFTONE_TEMPERATURE)


def soft_staircase(z: torch.Tensor, bits: int, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """The n-bit staircase with each step replaced by a sigmoid a fifth of a bin wide (same levels far from
    the thresholds, a gradient that peaks at them)."""
    levels = 2**bits
    width = (hi - lo).clamp_min(1e-12) / levels
    steps = torch.arange(1, levels, device=z.device, dtype=z.dtype).view(-1, 1, 1, 1, 1)
    thresholds = lo.unsqueeze(0) + steps * width.unsqueeze(0)
    soft = torch.sigmoid((z.unsqueeze(0) - thresholds) / (STAIRCASE_TEMPERATURE * width.unsqueeze(0))).sum(0)
    return lo + width / 2 + soft * width
