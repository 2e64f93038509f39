"""Attacks on pixel-space models: one contract (``attack(model, x, y) -> AttackResult``), one PGD loop."""

from .apgd import APGD
from .base import Attack, AttackResult, clip_to_ball, predict
from .cw import CarliniWagnerL2
from .deepfool import DeepFool, DeepFoolLinf
from .pgd import PGD, pgd_loop
from .registry import ATTACK_NAMES, attack_parameters, make_attack
from .square import Square

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
