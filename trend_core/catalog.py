"""Discovery in the manner of timm's ``list_models``: the zoo's models, architectures, presets and attacks by
wildcard."""

from __future__ import annotations

import fnmatch
import os

from trend_core.attacks.registry import list_attacks
from trend_core.config.architectures import list_archs
from trend_core.config.presets import PRESETS
from trend_core.models.zoo import Zoo

__all__ = ["list_architectures", "list_archs", "list_attacks", "list_models", "list_preset_models", "list_presets"]


def list_architectures(pattern: str = "*", dataset: str | None = None) -> list[str]:
    """Registered architecture names matching a shell-style wildcard (``"resnet*"``), usable on ``dataset``."""
    return [name for name in list_archs(dataset) if fnmatch.fnmatch(name, pattern.lower())]


def list_presets(pattern: str = "*") -> list[str]:
    """Names of the preset model sets (``trend zoo preset NAME``) matching a wildcard."""
    return sorted(name for name in PRESETS if fnmatch.fnmatch(name, pattern.lower()))


def list_models(pattern: str = "*", home: str | os.PathLike | None = None, dataset: str | None = None) -> list[str]:
    """Canonical names of the models in the zoo at ``home`` (default $TREND_HOME, as ``trend zoo list``) that
    match a wildcard, e.g. ``list_models("*/Q[12]/*")``, the imported networks too (``list_models("user/*")``);
    ``dataset`` keeps one dataset's. The names the presets would train are ``list_preset_models``."""
    names = [str(meta.get("name", "")) for meta in Zoo(home).list(dataset, imported_networks=True)]
    return [name for name in names if name and fnmatch.fnmatchcase(name, pattern)]


def list_preset_models(pattern: str = "*", preset: str | None = None) -> list[str]:
    """Canonical names of the preset models (``trend zoo preset NAME`` trains them) matching a wildcard, e.g.
    ``list_preset_models("*Q[12]*")``; any name that ``ModelSpec.parse`` reads also works with the zoo."""
    presets = [preset] if preset is not None else list(PRESETS)
    names = dict.fromkeys(name for p in presets for name in PRESETS.get(p, []))
    return [name for name in names if fnmatch.fnmatchcase(name, pattern)]
