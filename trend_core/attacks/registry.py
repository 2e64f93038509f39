"""Attacks by name: ``make_attack("cw", kappa=30)`` for the CLI, the dashboard and cached runs; a user's own
Attack subclass joins them with ``register_attack("my-attack", MyAttack)``."""

from __future__ import annotations

import fnmatch
import inspect
import re

from trend_core.attacks.apgd import APGD
from trend_core.attacks.base import Attack
from trend_core.attacks.cw import CarliniWagnerL2
from trend_core.attacks.deepfool import DeepFool, DeepFoolLinf
from trend_core.attacks.pgd import PGD
from trend_core.attacks.square import Square
from trend_core.errors import TrendError

_FACTORIES: dict[str, tuple[type[Attack], dict]] = {
    "pgd": (PGD, {"norm": "linf"}),
    "pgd-l2": (PGD, {"norm": "l2"}),
    "cw": (CarliniWagnerL2, {}),
    "deepfool": (DeepFool, {}),
    "deepfool-linf": (DeepFoolLinf, {}),
    "apgd-ce": (APGD, {"loss": "ce", "norm": "linf"}),
    "apgd-dlr": (APGD, {"loss": "dlr", "norm": "linf"}),
    "apgd-ce-l2": (APGD, {"loss": "ce", "norm": "l2"}),
    "square": (Square, {}),
}
ATTACK_NAMES: tuple[str, ...] = tuple(_FACTORIES)  # the built-in ones (what the dashboard and the CLI offer)
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def register_attack(name: str, cls: type[Attack], **fixed) -> None:
    """Add the Attack subclass ``cls`` under ``name`` (lower case, digits, - and _), so ``make_attack(name)``,
    ``list_attacks()`` and ``trend_core.<ClassName>`` offer it; ``fixed``: keyword arguments the name fixes
    (as ``norm="l2"`` for pgd-l2). A taken name, a class name another attack uses, or a class that is not an
    Attack subclass raises TrendError.

    >>> register_attack("fgsm", FGSM)   # doctest: +SKIP
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TrendError(f"An attack name is lower-case letters, digits, '-' and '_' (e.g. 'my-pgd'), got {name!r}.")
    if not (isinstance(cls, type) and issubclass(cls, Attack)) or cls is Attack:
        raise TrendError(f"register_attack needs a subclass of trend_core.Attack (with a perturb method), got {cls!r}.")
    if name in _FACTORIES:
        raise TrendError(f"An attack called {name!r} is already registered ({_FACTORIES[name][0].__name__}).")
    taken = attack_classes().get(cls.__name__)
    if taken is not None and taken is not cls:
        raise TrendError(f"Another attack class is already called {cls.__name__}; rename your class.")
    known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(fixed) - set(known))
    if unknown:
        raise TrendError(f"{cls.__name__} has no parameter {', '.join(map(repr, unknown))} to fix.")
    _FACTORIES[name] = (cls, dict(fixed))


def attack_class(name: str) -> tuple[type[Attack], dict]:
    """The class behind ``name`` and the keyword arguments the name fixes (e.g. ``norm="l2"`` for pgd-l2)."""
    cls, fixed = _lookup(name)
    return cls, dict(fixed)


def list_attacks(pattern: str = "*") -> list[str]:
    """Registered attack names matching a shell-style wildcard (``list_attacks("pgd*")``)."""
    return sorted(n for n in _FACTORIES if fnmatch.fnmatch(n, pattern.lower()))


def attack_classes() -> dict[str, type[Attack]]:
    """Every registered attack class by its class name (what ``import trend_core as tl; tl.PGD`` offers)."""
    return {cls.__name__: cls for cls, _ in _FACTORIES.values()}


def attack_parameters(name: str) -> list[str]:
    """The keyword arguments ``make_attack(name, ...)`` accepts."""
    cls, fixed = _lookup(name)
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self" and p not in fixed]


def make_attack(name: str, **params) -> Attack:
    """The attack called ``name`` (one of ``list_attacks()``) with keyword ``params``; None values mean "default".

    Unknown names, unknown parameters and invalid values raise TrendError.
    """
    cls, fixed = _lookup(name)
    given = {k: v for k, v in params.items() if v is not None}
    allowed = attack_parameters(name)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise TrendError(
            f"Attack {name!r} has no parameter {', '.join(map(repr, unknown))}; valid ones are: {', '.join(allowed)}."
        )
    try:
        return cls(**given, **fixed)
    except TypeError as error:  # a value of the wrong kind deep inside a constructor
        raise TrendError(f"Invalid parameters for attack {name!r}: {error}.") from None


def _lookup(name: str) -> tuple[type[Attack], dict]:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _FACTORIES:
        raise TrendError(f"Unknown attack {name!r}; choose one of: {', '.join(_FACTORIES)}.")
    return _FACTORIES[key]
