"""TREND Lab engine: transferability of adversarial examples and robust ensembles (no Streamlit here).

``import trend_core as tl`` is cheap: the main objects load on first use (PEP 562), so the dashboard still
paints before torch is imported. From a notebook::

    import trend_core as tl
    zoo = tl.Zoo()  # $TREND_HOME; get_or_train trains what is missing
    fp, q1 = (zoo.get_or_train(n) for n in ["digits/resnet18-w0.25/FP/sgd/s0", "digits/resnet18-w0.25/Q1/sgd/s0"])
    print(tl.run_transfer([fp, q1], tl.PGD(eps=0.1), sources=[fp], limit=200).matrix())

Attacks are listed from the attack registry (``tl.list_attacks()``), so an attack registered there (your own
Attack subclass: ``tl.register_attack("my-attack", MyAttack)``) appears here as ``tl.<ClassName>`` and in
``tl.make_attack("my-attack", ...)`` without editing this file.
"""

from __future__ import annotations

import importlib
from typing import Any

from trend_core.config.specs import ModelSpec
from trend_core.config.version import VERSION
from trend_core.errors import TrendError

__version__ = VERSION

# name -> the module that defines it (imported on first access)
_LAZY = {
    "Attack": "attacks.base",
    "AttackResult": "attacks.base",
    "make_attack": "attacks.registry",
    "list_attacks": "attacks.registry",
    "register_attack": "attacks.registry",
    "attack_settings": "attacks.settings",
    "step_size_for": "attacks.pgd",
    "EnsemblePGD": "attacks.ensemble_pgd",
    "MajorityVote": "nn.vote",
    "select_ensembles": "ensemble.selection",
    "robustness_sweep": "experiments.ensemble_sweep",
    "robustness_ratios": "experiments.ensemble_sweep",
    "run_audit": "experiments.audit",
    "Zoo": "models.zoo",
    "load_dataset": "data.datasets",
    "list_datasets": "config.datasets",
    "run_transfer": "experiments.transfer",
    "TransferResult": "experiments.transfer_result",
    "RunOptions": "runtime.options",
    "fit_tm": "experiments.curve",
    "decision_boundary": "experiments.boundary",
    "with_preprocessing": "nn.wrap",
    "list_models": "catalog",
    "list_architectures": "catalog",
    "list_presets": "catalog",
    "list_preset_models": "catalog",
    "Store": "storage.store",
    "MemoryStore": "storage.store",
}


def _attack_classes() -> dict[str, type]:
    from trend_core.attacks.registry import attack_classes  # local: loads torch on first use (PEP 562, see above)

    return attack_classes()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif not name.startswith("_") and name in (classes := _attack_classes()):
        value = classes[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_attack_classes()))


__all__ = ["ModelSpec", "TrendError", "__version__"]
__all__ += list(_LAZY)  # (and the registry's attack classes: see dir(trend_core))
