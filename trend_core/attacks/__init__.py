"""Attacks on pixel-space models: one contract (``attack(model, x, y) -> AttackResult``), one PGD loop."""
from .base import Attack, AttackResult, clip_to_ball, predict
from .cw import CarliniWagnerL2
from .deepfool import DeepFool
from .pgd import PGD, pgd_loop
from .registry import ATTACK_NAMES, attack_parameters, make_attack

__all__ = ["ATTACK_NAMES", "PGD", "Attack", "AttackResult", "CarliniWagnerL2", "DeepFool", "attack_parameters",
           "clip_to_ball", "make_attack", "pgd_loop", "predict"]
