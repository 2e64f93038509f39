"""How a finding is judged: each part's 95% interval against its threshold, a verdict record per finding,
and the numbers a record carries (``{value, ci_low, ci_high}``). The eight rules themselves are in findings.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from trend_core import stats
from trend_core.stats import Estimate

HELD, FAILED, INCONCLUSIVE = stats.HELD, stats.FAILED, stats.INCONCLUSIVE
UNTESTABLE = "not testable at this scale"
VERDICTS = (HELD, FAILED, INCONCLUSIVE, UNTESTABLE)
INTERVAL_NOTE = (
    "Every number comes with a 95% bootstrap interval over the test images (paired: quantities measured on the "
    "same images share resamples; finding 2 also resamples the seeds). A part holds only when its whole interval "
    "is on the held side of the threshold, fails only when it is wholly on the other side, and is inconclusive "
    "otherwise."
)

CLAIMS = {
    1: "PGD transfers far more than CW (kappa 0) and DeepFool; CW with kappa 30 transfers much more than kappa 0, "
    "at larger L2/L-inf norms.",
    2: "Seeds barely change transferability; the optimizer does (SGD vs Adam), and transfer between SGD- and "
    "Adam-trained models is asymmetric.",
    3: "VGG sources transfer to ResNets more than the reverse; ResNets are the most exposed targets.",
    4: "Low-bit input quantization (Q1, Q2, HT) as target sharply lowers TM; Q-bits > 2 make good sources.",
    5: "Weight/activation quantization effects depend on dataset and architecture.",
    6: "A-GD >= D-AG and EMPIR-style at low eps; U-GD weakens with more members.",
    7: "Ensembles of low-TM members (FP-Q1-Q2, FP-Q1-Q2-HT) are more robust than any member alone.",
    8: "The TM(eps) fit from 4 points predicts 20 measured points with RMSE < 5%.",
}
PAPER = {
    1: "CIFAR-10 ResNet18 between seeds: PGD 89.9% transferred (8166 of 9085), mean L2 1.409, L-inf 0.031; "
    "CW kappa 0 and DeepFool far lower; kappa 30 higher than kappa 0 at larger norms.",
    2: "Small std over 10 seeds; SGD <-> Adam transfer lower and asymmetric.",
    3: "VGG -> ResNet higher than ResNet -> VGG; ResNet columns have the highest averages.",
    4: "Q1, Q2, HT columns sharply lower; Q8..Q4 rows high.",
    5: "Differs between CIFAR-10, CIFAR-100 and ImageNet and between architectures.",
    6: "A-GD up to 1.56x the attack success of D-AG / EMPIR at small eps, meeting near eps 0.03; U-GD weakens "
    "as members are added.",
    7: "FP-Q1-Q2 at eps 0.01 under A-GD: 1.30x Q1, 1.36x Q2, 8.43x FP (CIFAR-10).",
    8: "RMSE < 5%; mean difference 0.055 (CIFAR-10 ResNet18).",
}


def finding(
    number: int,
    verdict: str,
    rule: str,
    measured: str,
    numbers: dict | None = None,
    parts: list | None = None,
    images_to_decide: int | None = None,
) -> dict:
    assert verdict in VERDICTS
    return {
        "finding": number,
        "claim": CLAIMS[number],
        "paper": PAPER[number],
        "measured": measured,
        "verdict": verdict,
        "rule": rule,
        "numbers": _clean(numbers or {}),
        "parts": _clean(parts or []),
        "images_to_decide": images_to_decide,
    }


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else round(float(obj), 6)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def stage_result(stages: dict, name: str) -> dict | None:
    stage = stages.get(name) or {}
    return stage if stage.get("status") == "done" else None


def why_missing(stages: dict, name: str) -> str:
    return str((stages.get(name) or {}).get("status", "not run"))


def number_record(est: Estimate, scale: float = 1.0) -> dict:
    """A number for findings.json: the value and its interval, scaled (e.g. 100 for percentages)."""
    iv = (est * scale).interval()
    return {"value": iv.estimate, "ci_low": iv.low, "ci_high": iv.high}


def estimate_text(est: Estimate, scale: float = 1.0, fmt: str = ".3f", unit: str = "") -> str:
    return (est * scale).interval().text(fmt, unit=unit)


def percent_text(est: Estimate) -> str:
    return estimate_text(est, 100, ".1f", "%")


def judge(name: str, est: Estimate, threshold: float, held_if: str, n_images: int) -> dict:
    """One part of a finding: the estimate's interval against the threshold, and for an open one how many test
    images would decide it."""
    iv = est.interval()
    verdict = stats.verdict(iv, threshold, held_if)
    return {
        "part": name,
        "verdict": verdict,
        "value": iv.estimate,
        "ci_low": iv.low,
        "ci_high": iv.high,
        "threshold": threshold,
        "held_if": held_if,
        "images_to_decide": stats.images_to_decide(iv, threshold, n_images) if verdict == INCONCLUSIVE else None,
    }


def conclude(number: int, rule: str, measured: str, numbers: dict, parts: list[dict]) -> dict:
    """The finding's verdict from its parts: all held -> held, any failed -> did not hold, else inconclusive
    with the largest number of images any open part needs."""
    verdict = stats.combine([p["verdict"] for p in parts if p["verdict"] != UNTESTABLE])
    needed = None
    if verdict == INCONCLUSIVE:
        counts = [p.get("images_to_decide") for p in parts if p["verdict"] == INCONCLUSIVE]
        known = [int(c) for c in counts if c is not None]
        needed = max(known) if known and len(known) == len(counts) else None
        if needed is not None:
            measured += f"; about {needed} test images would decide it"
    return finding(number, verdict, rule, measured, numbers, parts, needed)


class TransferSample:
    """A transfer run's per-image outcomes with one set of bootstrap resamples, so every pair's TM, transfer %
    and mean L2 is an Estimate and any two of them are compared paired."""

    def __init__(self, images: pd.DataFrame, weights: np.ndarray | None = None):
        self.images = images
        self.n = len(images)
        self.weights = stats.resample_weights(self.n) if weights is None else weights

    def _column(self, name: str) -> np.ndarray:
        return self.images[name].to_numpy(dtype=bool)

    def generated(self, s: str, t: str) -> np.ndarray:
        return self._column(f"correct:{s}") & self._column(f"correct:{t}") & self._column(f"success:{s}")

    def tm(self, s: str, t: str) -> Estimate:
        if s == t:
            return Estimate(1.0, np.ones(len(self.weights)))
        gen = self.generated(s, t)
        return Estimate.ratio_of(self.weights, gen & self._column(f"fooled:{s}>{t}"), gen)

    def mean_l2(self, s: str, t: str) -> Estimate:
        gen = self.generated(s, t)
        l2 = np.nan_to_num(self.images[f"l2:{s}"].to_numpy(dtype=float)) * gen
        return Estimate.ratio_of(self.weights, l2, gen)

    def mean_tm(self, pairs) -> Estimate:
        return Estimate.mean_of([self.tm(s, t) for s, t in pairs])

    def col_avg(self, labels: list[str], t: str) -> Estimate:
        return self.mean_tm([(s, t) for s in labels if s != t])

    def row_avg(self, labels: list[str], s: str) -> Estimate:
        return self.mean_tm([(s, t) for t in labels if t != s])


def matrix_sample(stages: dict) -> tuple[TransferSample | None, dict, list]:
    stage = stage_result(stages, "matrices")
    if stage is None or "images" not in stage:
        return None, {}, []
    return TransferSample(stage["images"]), stage["roles"], list(stage["labels"])


def role_label(roles: dict, role: str) -> str | None:
    return next((label for label, r in roles.items() if r == role), None)


def minimum_of(estimates: list[Estimate]) -> Estimate:
    """The smallest of several estimates, per resample (e.g. the ensemble's margin over its best member)."""
    return Estimate(min(e.value for e in estimates), np.min(np.vstack([e.replicates for e in estimates]), axis=0))
