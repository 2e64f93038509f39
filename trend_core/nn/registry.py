"""Architecture registry in the style of timm: builders register by name, per dataset family.

A builder takes ``(num_classes, in_channels, image_size, width, weight_bits, act_bits, pretrained)`` and
returns the bare network (no preprocessing); ``trend_core.nn.build`` wraps it. The builders register when
``nn/architectures.py`` is imported, which the ``trend_core.nn`` package does before any of its modules.
"""

from __future__ import annotations

from typing import Callable

_BUILDERS: dict[str, Callable] = {}
_FAMILIES: dict[str, tuple[str, ...]] = {}

SMALL_IMAGE_DATASETS = ("digits", "mnist", "cifar10", "cifar100")


def register_arch(name: str, datasets: tuple[str, ...] = SMALL_IMAGE_DATASETS) -> Callable:
    """Decorator: register a builder under ``name`` for the given datasets."""

    def wrap(builder: Callable) -> Callable:
        _BUILDERS[name] = builder
        _FAMILIES[name] = datasets
        return builder

    return wrap


def list_archs(dataset: str | None = None) -> list[str]:
    """Registered architecture names, those usable on ``dataset`` if given."""
    return sorted(n for n, ds in _FAMILIES.items() if dataset is None or dataset in ds)


def get_builder(name: str) -> Callable:
    """The builder registered under ``name``."""
    return _BUILDERS[name]
