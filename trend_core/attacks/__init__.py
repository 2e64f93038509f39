"""Attacks on pixel-space models: one contract (``attack(model, x, y) -> AttackResult``), one PGD loop."""
from .base import Attack, AttackResult, clip_to_ball, predict
from .pgd import PGD, pgd_loop

__all__ = ["Attack", "AttackResult", "PGD", "clip_to_ball", "pgd_loop", "predict"]
