"""Is a majority vote more robust than every one of its members? A paired bootstrap over the test images of
(the vote's accuracy under an attack - a member's accuracy under the same kind of attack), and the one sentence
a defender reads: more robust than every member, beaten by a named member, or not distinguishable from one.

Low pairwise TM (TREND's ranking) is a proxy for robustness, not a guarantee: this is what says whether the
chosen vote actually beats its members on the images measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from trend_core.ensemble.selection import ENSEMBLE_LABEL
from trend_core.errors import TrendError
from trend_core.stats import (
    DRAWS,
    FAILED,
    HELD,
    INCONCLUSIVE,
    Interval,
    images_to_decide,
    interval,
    ratio_replicates,
    resample_weights,
    verdict,
)

FINDINGS = {HELD: "ensemble more robust", FAILED: "member more robust", INCONCLUSIVE: "not distinguishable"}


@dataclass(frozen=True)
class MemberComparison:
    """The vote against one member alone, on the same images: both accuracies and their paired difference."""

    member: str
    ensemble: Interval  # the vote's accuracy
    alone: Interval  # the member's accuracy when attacked alone
    difference: Interval  # ensemble - member, paired over images
    verdict: str  # held: the vote is more robust; did not hold: the member is; inconclusive
    n_images: int = 0

    def as_row(self) -> dict:
        """One table row (accuracies and the difference with their 95% bounds)."""
        return {
            "member": self.member,
            **self.ensemble.as_dict("ensemble_accuracy"),
            **self.alone.as_dict("member_accuracy"),
            **self.difference.as_dict("difference"),
            "verdict": self.verdict,
            "finding": FINDINGS[self.verdict],
            "n_images": self.n_images,
        }


def mean_interval(values: np.ndarray, weights: np.ndarray) -> Interval:
    """The mean of per-image ``values`` with its bootstrap interval under resample ``weights`` (draws x images)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    return interval(float(values.mean()), ratio_replicates(weights, values, np.ones_like(values)))


def accuracy_interval(per_image: np.ndarray, draws: int = DRAWS, seed: int = 0) -> Interval:
    """Accuracy (the mean of per-image correctness, fractional for a vote's tie-breaks) with its 95% interval."""
    per_image = np.asarray(per_image, dtype=np.float64)
    return mean_interval(per_image, resample_weights(per_image.size, draws, seed))


def compare_with_members(
    outcomes: Mapping[str, np.ndarray], ensemble: str = ENSEMBLE_LABEL, draws: int = DRAWS, seed: int = 0
) -> list[MemberComparison]:
    """The vote ``outcomes[ensemble]`` against every other entry (a member), each the per-image correctness on
    the same images in the same order; one bootstrap (the same resamples) serves every comparison."""
    if ensemble not in outcomes:
        raise TrendError(f"No per-image results for {ensemble!r}; the comparison needs the vote's.")
    ens = np.asarray(outcomes[ensemble], dtype=np.float64)
    weights = resample_weights(ens.size, draws, seed)
    ens_interval = mean_interval(ens, weights)
    found = []
    for member, values in outcomes.items():
        if member == ensemble:
            continue
        alone = np.asarray(values, dtype=np.float64)
        if alone.shape != ens.shape:
            raise TrendError(f"{member} was measured on {alone.size} images and the vote on {ens.size}.")
        difference = mean_interval(ens - alone, weights)
        found.append(
            MemberComparison(
                member, ens_interval, mean_interval(alone, weights), difference, paired_verdict(difference), ens.size
            )
        )
    return found


def paired_verdict(difference: Interval) -> str:
    """held: the whole interval of (vote - member) lies above 0; did not hold: wholly below 0 (the member is
    more robust); inconclusive otherwise (an interval touching 0 does not tell them apart)."""
    if verdict(difference, 0.0, "above") == HELD:
        return HELD
    return FAILED if verdict(difference, 0.0, "below") == HELD else INCONCLUSIVE


def _pct(value: Interval) -> str:
    return value.text(".1f", scale=100, unit="%")


def _pp(value: Interval) -> str:
    return value.text("+.1f", scale=100, unit=" pp")


def _names(items: list[MemberComparison]) -> str:
    names = [c.member for c in items]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def overall_verdict(comparisons: list[MemberComparison]) -> str:
    """held: more robust than every member; did not hold: some member beats it; else inconclusive."""
    verdicts = [c.verdict for c in comparisons]
    if FAILED in verdicts:
        return FAILED
    return HELD if verdicts and all(v == HELD for v in verdicts) else INCONCLUSIVE


def verdict_sentence(comparisons: list[MemberComparison], setting: str) -> str:
    """One sentence with 95% intervals: the vote is more robust than every member, or which member beats it, or
    which it cannot be told apart from on this many images. ``setting`` says under what, e.g. "Under A-GD at eps
    0.1"."""
    if not comparisons:
        return f"{setting}, there is no member to compare the ensemble with."
    n = comparisons[0].n_images
    ens = comparisons[0].ensemble
    how = f"paired bootstrap over {n} test images, 95% intervals"
    beaten = sorted((c for c in comparisons if c.verdict == FAILED), key=lambda c: c.difference.estimate)
    if beaten:
        worst = beaten[0]
        return (
            f"{setting}, the ensemble is less robust than {_names(beaten)} alone: {worst.member} keeps "
            f"{_pct(worst.alone)} of the images, the ensemble {_pct(ens)} (ensemble - {worst.member}: "
            f"{_pp(worst.difference)}; {how})."
        )
    best = max(comparisons, key=lambda c: c.alone.estimate)
    if all(c.verdict == HELD for c in comparisons):
        return (
            f"{setting}, the ensemble is more robust than every member: it keeps {_pct(ens)} of the images, the "
            f"best member, {best.member}, {_pct(best.alone)} (ensemble - {best.member}: {_pp(best.difference)}; "
            f"{how})."
        )
    open_ = sorted((c for c in comparisons if c.verdict == INCONCLUSIVE), key=lambda c: c.difference.estimate)
    held = [c for c in comparisons if c.verdict == HELD]
    first = open_[0]
    more = f"more robust than {_names(held)} but " if held else ""
    needed = images_to_decide(first.difference, 0.0, n)
    decide = f"; about {needed} images would tell them apart" if needed and needed > n else ""
    return (
        f"{setting}, the ensemble ({_pct(ens)}) is {more}not distinguishable from {_names(open_)} on {n} images "
        f"({first.member} keeps {_pct(first.alone)}; ensemble - {first.member}: {_pp(first.difference)}; "
        f"{how}{decide})."
    )


def member_verdict(per_image: pd.DataFrame, setting: str) -> dict:
    """The vote (column ``ensemble``) against each member (the other columns) on the same images: ``comparison``
    (one row per member: accuracies and the paired difference with 95% bounds, verdict), ``verdict`` (held:
    more robust than every member; did not hold: a member beats it; inconclusive) and ``sentence``."""
    comparisons = compare_with_members({str(c): per_image[c].to_numpy(float) for c in per_image.columns})
    return {
        "comparison": pd.DataFrame([c.as_row() for c in comparisons]),
        "verdict": overall_verdict(comparisons),
        "sentence": verdict_sentence(comparisons, setting),
    }
