"""The stages of `trend reproduce` in the order they run: name -> (title, the function computing it)."""

from __future__ import annotations

from typing import Callable

from trend_core.reproduce.stages import StageContext, audit, baseline, boundary, matrices, tm_fit, transfer_attacks
from trend_core.reproduce.vote_stages import ensemble_attacks, trend

STAGES: dict[str, tuple[str, Callable[[StageContext], dict]]] = {
    "baseline": ("Baseline clean accuracy (Tables IV-VI)", baseline),
    "attacks": ("Transfer between seeds and optimizers under four attacks (Tables II-III)", transfer_attacks),
    "matrices": ("TM matrices: architecture, input and weight/activation quantization (Figs. 1-3)", matrices),
    "boundary": ("Decision boundary FP vs Q1 (Fig. 4)", boundary),
    "ensembles": ("Ensemble attacks over eps and gradient domination (Figs. 5-7)", ensemble_attacks),
    "trend": ("TREND ensembles vs their members, and growth (Figs. 8-9)", trend),
    "fit": ("TM(eps) fit from 4 points vs a 20-point sweep (Fig. 12, Table VII)", tm_fit),
    "audit": ("Robustness audit of the TREND ensembles and their members", audit),
}
