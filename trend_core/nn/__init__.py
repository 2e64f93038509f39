"""Architectures, quantization layers and the spec -> model builder."""

from trend_core.nn.build import Preprocess, TrendModel, build_model
from trend_core.nn.registry import list_archs, register_arch

__all__ = ["Preprocess", "TrendModel", "build_model", "list_archs", "register_arch"]
