"""Architecture registry in the style of timm: builders register by name, per dataset family.

A builder takes ``(num_classes, in_channels, image_size, width, weight_bits, act_bits, pretrained)`` and
returns the bare network (no preprocessing); ``trend_core.nn.build`` wraps it. The builders register when
``nn/architectures.py`` is imported, which the ``trend_core.nn`` package does before any of its modules.
"""

from __future__ import annotations

from typing import Callable

from trend_core.config.architectures import SMALL_IMAGE_DATASETS, add_arch_name

_BUILDERS: dict[str, Callable] = {}


def register_arch(name: str, datasets: tuple[str, ...] = SMALL_IMAGE_DATASETS) -> Callable:
    """Decorator: register a builder under ``name`` for the given datasets."""

    def wrap(builder: Callable) -> Callable:
        _BUILDERS[name] = builder
        add_arch_name(name, datasets)
        return builder

    return wrap


def get_builder(name: str) -> Callable:
    """The builder registered under ``name`` (every name ``trend_core.config.architectures`` lists has one)."""
    return _BUILDERS[name]
