"""Discovery in the manner of timm's ``list_models``: architectures, preset models and attacks by wildcard."""

from __future__ import annotations

import fnmatch

from trend_core.attacks.registry import list_attacks
from trend_core.config.architectures import list_archs
from trend_core.models.zoo import PRESETS

__all__ = ["list_architectures", "list_archs", "list_attacks", "list_models", "list_presets"]


def list_architectures(pattern: str = "*", dataset: str | None = None) -> list[str]:
    """Registered architecture names matching a shell-style wildcard (``"resnet*"``), usable on ``dataset``."""
    return [name for name in list_archs(dataset) if fnmatch.fnmatch(name, pattern.lower())]


def list_presets(pattern: str = "*") -> list[str]:
    """Names of the preset model sets (``trend zoo preset NAME``) matching a wildcard."""
    return sorted(name for name in PRESETS if fnmatch.fnmatch(name, pattern.lower()))


def list_models(pattern: str = "*", preset: str | None = None) -> list[str]:
    """Canonical names of the preset models matching a wildcard, e.g. ``list_models("*Q[12]*")`` or
    ``list_models("digits/resnet18*")``; any name that ``ModelSpec.parse`` reads also works with the zoo."""
    presets = [preset] if preset is not None else list(PRESETS)
    names = dict.fromkeys(name for p in presets for name in PRESETS.get(p, []))
    return [name for name in names if fnmatch.fnmatchcase(name, pattern)]
