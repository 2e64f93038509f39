"""One source of attack settings: each attack's defaults and parameter ranges for a dataset.

The dashboard's widgets, the analysis jobs and the `trend` command all take their defaults from
``attack_settings(name, dataset)`` and complete a user's choice with ``AttackSettings.complete``, so a run
launched anywhere gets the same parameters (and the echoed `trend ...` command reproduces a page's run).
Attacks registered later (``registry.make_attack``) get their defaults from their constructor's signature.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from trend_core.attacks.base import L2_EPS_SCALE, Attack
from trend_core.attacks.pgd import step_size_for
from trend_core.attacks.registry import attack_class, attack_parameters, make_attack
from trend_core.config.datasets import get_info
from trend_core.errors import TrendError

LABELS = {
    "pgd": "PGD (L-inf)",
    "pgd-l2": "PGD (L2)",
    "cw": "Carlini-Wagner L2",
    "deepfool": "DeepFool (L2)",
    "deepfool-linf": "DeepFool (L-inf, the paper's)",
    "apgd-ce": "APGD-CE (L-inf)",
    "apgd-dlr": "APGD-DLR (L-inf)",
    "apgd-ce-l2": "APGD-CE (L2)",
    "square": "Square (L-inf, score-based)",
}
# integer parameters: (low, high) of the range a form offers; floats: (low, high)
RANGES: dict[str, tuple[float, float]] = {
    "steps": (1, 1000),
    "kappa": (0.0, 100.0),
    "candidates": (2, 1000),
    "binary_search_steps": (1, 50),
    "overshoot": (0.0, 1.0),
}
HIDDEN = ("batch_size", "autocast", "norm", "profile")  # not choices a form offers (the profile is the sidebar's)


@dataclass(frozen=True)
class Setting:
    """One parameter of an attack: its default for a dataset and the range a form offers."""

    name: str
    default: object
    low: float | None = None
    high: float | None = None

    @property
    def integer(self) -> bool:
        return isinstance(self.default, int) and not isinstance(self.default, bool)


@dataclass(frozen=True)
class AttackSettings:
    """An attack's parameters on one dataset: eps (None for minimum-norm attacks: no clip) and the others.

    >>> s = attack_settings("pgd", "digits")   # doctest: +SKIP
    >>> s.complete(eps=0.2)                    # doctest: +SKIP
    {'eps': 0.2, 'steps': 40, 'step_size': 0.01, 'random_start': True, 'seed': 0}
    """

    attack: str
    dataset: str
    label: str
    minimum_norm: bool
    norm: str
    eps: Setting
    params: tuple[Setting, ...]

    def setting(self, name: str) -> Setting:
        for item in (self.eps, *self.params):
            if item.name == name:
                return item
        raise KeyError(name)

    def defaults(self) -> dict:
        """Every parameter at its default (step_size derived from eps and steps)."""
        return self.complete()

    def complete(self, **given) -> dict:
        """The full parameters of a run: ``given`` values (None: the default) over the defaults; PGD-style step
        sizes follow ``step_size_for(eps, steps)`` unless given; eps 0 of a minimum-norm attack means no clip."""
        values = {s.name: s.default for s in (self.eps, *self.params)}
        unknown = sorted(set(given) - set(values))
        if unknown:
            raise TrendError(
                f"Attack {self.attack!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"valid ones are: {', '.join(values)}."
            )
        values.update({k: v for k, v in given.items() if v is not None})
        if self.minimum_norm and not values.get("eps"):
            values["eps"] = None
        eps, steps = values.get("eps"), values.get("steps") or 1
        if "step_size" in values and given.get("step_size") is None and isinstance(eps, (int, float)) and eps:
            values["step_size"] = step_size_for(float(eps), int(steps) if isinstance(steps, (int, float)) else 1)
        return values

    def build(self, **given) -> Attack:
        """The attack object with ``complete(**given)``."""
        return make_attack(self.attack, **self.complete(**given))


def attack_settings(attack: str, dataset: str) -> AttackSettings:
    """Defaults and ranges of ``attack`` (a registry name) on ``dataset``: eps from the dataset's default and
    sweep range (x4 for L2 budgets), the other parameters from the attack's constructor."""
    cls, fixed = attack_class(attack)
    key = attack.strip().lower()
    info = get_info(dataset)
    norm = str(fixed.get("norm", cls.norm))
    scale = L2_EPS_SCALE if norm == "l2" and not cls.minimum_norm else 1.0
    top = round(max(info.eps_range[1], info.default_eps) * scale, 4)
    eps = Setting("eps", None if cls.minimum_norm else round(info.default_eps * scale, 6), 0.0, top)
    signature = inspect.signature(cls.__init__).parameters
    params = []
    for name in attack_parameters(key):
        if name in ("eps", *HIDDEN):
            continue
        default = signature[name].default
        if default is inspect.Parameter.empty:
            default = None
        low, high = RANGES.get(name, (None, None))
        params.append(Setting(name, default, low, high))
    return AttackSettings(key, dataset, LABELS.get(key, cls.__name__), bool(cls.minimum_norm), norm, eps, tuple(params))
