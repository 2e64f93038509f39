"""Confidence intervals and three-way verdicts for numbers measured on a sample of test images.

Every rate this project reports (transfer %, TM, accuracy under attack, attack success) is a ratio of counts over
the same test images, so one bootstrap serves them all: draw ``draws`` resamples of the images once
(``resample_weights``: how often each image appears in each resample) and evaluate every quantity of a finding
under the same resamples. Two quantities measured on the same images are then compared *paired*: the interval of
their difference reflects that they share images, which is much narrower than two independent intervals.

A verdict compares an interval with a threshold: ``held`` only when the whole interval lies on the held side,
``did not hold`` only when it lies wholly on the other side, otherwise ``inconclusive``, with an estimate of how
many test images would decide it (the interval narrows as 1/sqrt(images)).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

HELD, FAILED, INCONCLUSIVE = "held", "did not hold", "inconclusive"
LEVEL = 0.95
DRAWS = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a ``level`` confidence interval [low, high] (NaN where undefined)."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL

    def text(self, fmt: str = ".3f", scale: float = 1.0, unit: str = "") -> str:
        """``0.312 [0.281, 0.344]``: the estimate and its interval, scaled and formatted alike."""
        if not math.isfinite(self.estimate):
            return "n/a"
        e, lo, hi = (v * scale for v in (self.estimate, self.low, self.high))
        return f"{e:{fmt}}{unit} [{lo:{fmt}}, {hi:{fmt}}]"

    def as_dict(self, prefix: str = "") -> dict:
        """``{prefix: estimate, prefix_ci_low: low, prefix_ci_high: high}`` (plain ``value``/``ci_low``/... without a prefix)."""
        name = prefix or "value"
        head = f"{prefix}_" if prefix else ""
        return {name: self.estimate, f"{head}ci_low": self.low, f"{head}ci_high": self.high}


def resample_weights(n: int, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    """``draws x n`` bootstrap counts: row b says how many times each of the n images appears in resample b."""
    if n <= 0:
        return np.zeros((draws, 0))
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)


def resample_groups(groups: int, draws: int = DRAWS, seed: int = 1) -> np.ndarray:
    """``draws x groups`` bootstrap counts over independent units (e.g. seeds or seed pairs)."""
    return resample_weights(groups, draws, seed)


def ratio_replicates(weights: np.ndarray, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Sum(numerator)/sum(denominator) under each resample (NaN where a resample's denominator is 0)."""
    num = weights @ np.asarray(numerator, dtype=np.float64)
    den = weights @ np.asarray(denominator, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """Sum(numerator)/sum(denominator) on the sample itself (NaN when the denominator is 0)."""
    den = float(np.sum(denominator))
    return float(np.sum(numerator)) / den if den > 0 else math.nan


def interval(estimate: float, replicates: np.ndarray, level: float = LEVEL) -> Interval:
    """Percentile interval of bootstrap ``replicates`` around ``estimate`` (resamples where it is undefined are
    left out; fewer than half defined gives NaN bounds)."""
    reps = np.asarray(replicates, dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    if not math.isfinite(estimate) or reps.size < max(2, np.asarray(replicates).size // 2):
        return Interval(float(estimate), math.nan, math.nan, level)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [tail, 1.0 - tail])
    return Interval(float(estimate), float(low), float(high), level)


def verdict(value: Interval, threshold: float, held_if: str = "above") -> str:
    """``held`` when the interval lies wholly on the held side of ``threshold`` (``above``: > threshold;
    ``below``: < threshold), ``did not hold`` when wholly on the other side, else ``inconclusive``."""
    if held_if not in ("above", "below"):
        raise ValueError(f"held_if must be 'above' or 'below', not {held_if!r}")
    if not (math.isfinite(value.low) and math.isfinite(value.high)):
        return INCONCLUSIVE
    above, below = value.low > threshold, value.high < threshold
    if held_if == "above":
        return HELD if above else FAILED if value.high <= threshold else INCONCLUSIVE
    return HELD if below else FAILED if value.low >= threshold else INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """All parts must hold: any ``did not hold`` fails the whole, else any ``inconclusive`` leaves it open."""
    if FAILED in verdicts:
        return FAILED
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return HELD


def images_to_decide(value: Interval, threshold: float, n_images: int) -> int | None:
    """About how many test images would put the interval wholly on one side of ``threshold``.

    The interval shrinks about its estimate as 1/sqrt(images): with the bound on the threshold's side at
    distance h from the estimate on n images, and the threshold at distance d, n * (h / d)^2 images bring that
    bound to the threshold. None when the estimate sits on the threshold or the interval is undefined (no
    number of images decides it from this estimate)."""
    gap = threshold - value.estimate
    if not (math.isfinite(value.low) and math.isfinite(value.high) and math.isfinite(gap)) or gap == 0:
        return None
    reach = (value.high - value.estimate) if gap > 0 else (value.estimate - value.low)
    if n_images <= 0 or reach <= 0:
        return None
    return int(math.ceil(n_images * (reach / abs(gap)) ** 2))


@dataclass(frozen=True)
class Estimate:
    """A number measured on the sample with its bootstrap replicates, so sums, differences and ratios of
    estimates carry their (paired) uncertainty: arithmetic applies to the point value and every replicate alike."""

    value: float
    replicates: np.ndarray

    @staticmethod
    def ratio_of(weights: np.ndarray, numerator: np.ndarray, denominator: np.ndarray) -> Estimate:
        """Sum(numerator)/sum(denominator) on the sample and under each resample in ``weights``."""
        return Estimate(ratio(numerator, denominator), ratio_replicates(weights, numerator, denominator))

    @staticmethod
    def mean_of(estimates: list[Estimate]) -> Estimate:
        """The mean of several estimates, leaving out undefined ones (as matrix averages leave out NaN cells)."""
        if not estimates:
            return Estimate(math.nan, np.full(DRAWS, np.nan))
        with warnings.catch_warnings():  # an all-NaN column is an undefined average: NaN, said quietly
            warnings.simplefilter("ignore", category=RuntimeWarning)
            value = float(np.nanmean([e.value for e in estimates]))
            reps = np.nanmean(np.vstack([e.replicates for e in estimates]), axis=0)
        return Estimate(value, reps)

    def interval(self, level: float = LEVEL) -> Interval:
        return interval(self.value, self.replicates, level)

    def _lift(self, other: Estimate | float, op) -> Estimate:
        if isinstance(other, Estimate):
            return Estimate(float(op(self.value, other.value)), op(self.replicates, other.replicates))
        return Estimate(float(op(self.value, other)), op(self.replicates, other))

    def __add__(self, other: Estimate | float) -> Estimate:
        return self._lift(other, np.add)

    def __sub__(self, other: Estimate | float) -> Estimate:
        return self._lift(other, np.subtract)

    def __mul__(self, other: Estimate | float) -> Estimate:
        return self._lift(other, np.multiply)

    def __truediv__(self, other: Estimate | float) -> Estimate:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._lift(other, _safe_divide)

    def __abs__(self) -> Estimate:
        return Estimate(abs(self.value), np.abs(self.replicates))


def _safe_divide(a, b):
    """a / b with NaN where b is 0 (a ratio with nothing below it is undefined, not infinite)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out
