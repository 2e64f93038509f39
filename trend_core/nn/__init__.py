"""Architectures, quantization layers and the spec -> model builder."""

from .build import Preprocess, TrendModel, build_model
from .registry import list_archs, register_arch

__all__ = ["Preprocess", "TrendModel", "build_model", "list_archs", "register_arch"]
