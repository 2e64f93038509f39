"""Turn a ModelSpec into a model that takes pixels in [0, 1] and returns logits.

The model is ``TrendModel(preprocess, net)``: preprocessing (normalization, then input quantization or
halftoning, with BPDA) is its first module, so attacks work in pixel space on every model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from trend_core.config.datasets import DatasetInfo, get_info
from trend_core.config.profiles import get_profile
from trend_core.nn.architectures import quantize_network
from trend_core.nn.quant import FloydSteinbergHalftone, Halftone, InputQuantizer
from trend_core.nn.registry import get_builder

if TYPE_CHECKING:  # (specs imports nn lazily for its architecture names; the annotation needs no import at run time)
    from trend_core.config.specs import ModelSpec


class Preprocess(nn.Module):
    """Normalize with the dataset's mean/std, then apply the spec's input quantization (or nothing)."""

    def __init__(self, mean, std, input_quant: str = "FP", per_batch_range: bool = False):
        super().__init__()
        mean_t = torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)
        self.input_quant = input_quant
        lo, hi = (0 - mean_t) / std_t, (1 - mean_t) / std_t
        if input_quant == "FP":
            self.quant = nn.Identity()
        elif input_quant == "HT":
            self.quant = Halftone(mean_t.shape[1])
        elif input_quant == "HT-FS":
            self.quant = FloydSteinbergHalftone(lo, hi)
        else:
            self.quant = InputQuantizer(int(input_quant[1:]), lo, hi, per_batch=per_batch_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant((x - self.mean) / self.std)

    def extra_repr(self) -> str:
        return f"input_quant={self.input_quant}"


class TrendModel(nn.Module):
    """Pixels in [0, 1] -> logits. ``spec`` (if known) travels with the module for labels and caching."""

    def __init__(self, preprocess: nn.Module, net: nn.Module, spec=None):
        super().__init__()
        self.preprocess = preprocess
        self.net = net
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))

    @property
    def name(self) -> str:
        return self.spec.name if self.spec is not None else self.__class__.__name__


def build_model(spec: ModelSpec, info: DatasetInfo | None = None, per_batch_range: bool | None = None) -> TrendModel:
    """A freshly initialized (seeded) model for ``spec``; pretrained torchvision weights when asked.

    The spec's profile decides the normalization constants and whether input quantization takes its bounds from
    the minibatch (``per_batch_range`` overrides the latter).

    The seed is applied inside a forked RNG state, so building (or loading) a model leaves the caller's global
    random stream where it was.
    """
    info = info or get_info(spec.dataset)
    profile = get_profile(getattr(spec, "profile", None))
    per_batch = profile.per_batch_range if per_batch_range is None else per_batch_range
    mean, std = profile.normalization_for(spec.dataset, tuple(info.mean), tuple(info.std))
    channels, size, _ = info.input_shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        net = get_builder(spec.arch)(info.num_classes, channels, size, spec.width, pretrained=spec.pretrained)
        quantize_network(net, spec.weight_bits, spec.act_bits)
    preprocess = Preprocess(mean, std, spec.input_quant, per_batch)
    return TrendModel(preprocess, net, spec)
