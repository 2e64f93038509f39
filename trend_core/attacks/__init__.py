"""Attacks on pixel-space models: one contract (``attack(model, x, y) -> AttackResult``), one PGD loop."""

from trend_core.attacks.apgd import APGD
from trend_core.attacks.base import Attack, AttackResult, clip_to_ball, predict
from trend_core.attacks.cw import CarliniWagnerL2
from trend_core.attacks.deepfool import DeepFool, DeepFoolLinf
from trend_core.attacks.pgd import PGD, pgd_loop
from trend_core.attacks.registry import ATTACK_NAMES, attack_parameters, make_attack
from trend_core.attacks.square import Square

__all__ = [
    "APGD",
    "ATTACK_NAMES",
    "PGD",
    "Attack",
    "AttackResult",
    "CarliniWagnerL2",
    "DeepFool",
    "DeepFoolLinf",
    "Square",
    "attack_parameters",
    "clip_to_ball",
    "make_attack",
    "pgd_loop",
    "predict",
]
