"""The one place where `trend reproduce` meets the engine's method profiles (``paper`` or ``authors``).

The profiles module may be absent from a build; then only the paper's method is implemented, a run asked for
``authors`` says so in its report, and everything else stays the same. Engine calls pass
``**engine_kwargs(fn, profile)``: the ``profile`` keyword reaches every engine function that accepts one.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from ..errors import TrendError
from ..specs import ModelSpec

DEFAULT_PROFILE = "paper"
KNOWN_PROFILES = ("paper", "authors")


def _profiles_module():
    """``trend_core.profiles`` when this build has it, else None."""
    try:
        return importlib.import_module("trend_core.profiles")
    except ModuleNotFoundError as exc:
        if exc.name != "trend_core.profiles":
            raise
        return None


def available_profiles() -> tuple[str, ...]:
    """The profiles a user may ask for."""
    module = _profiles_module()
    return tuple(getattr(module, "PROFILES", KNOWN_PROFILES)) if module is not None else KNOWN_PROFILES


def check_profile(name: str) -> str:
    """``name`` if it is a known profile, else a TrendError naming the choices."""
    choices = available_profiles()
    if name not in choices:
        raise TrendError(f"Unknown profile {name!r}; choose one of {', '.join(choices)}.")
    module = _profiles_module()
    if module is not None and hasattr(module, "get_profile"):
        module.get_profile(name)  # raises its own sentence for an invalid one
    return name


def profile_applied(profile: str) -> bool:
    """Whether this build can run ``profile`` (the paper's method always; others need the profiles module)."""
    return profile == DEFAULT_PROFILE or _profiles_module() is not None


def profile_note(profile: str) -> str | None:
    """A sentence for the report when the asked-for profile could not be applied, else None."""
    if profile_applied(profile):
        return None
    return (f"The {profile!r} profile was asked for, but this build has no trend_core.profiles module, so the "
            "models and attacks ran under the paper's method; the numbers below are the paper profile's.")


def profile_spec(spec: ModelSpec | str, profile: str) -> ModelSpec:
    """The spec of a model trained under ``profile`` (its name gains ``/authors``) where specs carry a profile."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec)
    if "profile" in getattr(spec, "__dataclass_fields__", {}) and profile_applied(profile):
        return spec.replace(profile=profile)
    return spec


def engine_kwargs(fn: Callable, profile: str) -> dict:
    """``{"profile": profile}`` when engine function ``fn`` takes a profile keyword, else {} (paper only)."""
    try:
        accepted = "profile" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        accepted = False
    return {"profile": profile} if accepted and profile_applied(profile) else {}
