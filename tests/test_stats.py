"""Bootstrap intervals and three-way verdicts (trend_core.stats)."""

import math

import numpy as np
import pytest

from trend_core import stats


def test_interval_covers_a_known_binomial_rate():
    rng = np.random.default_rng(0)
    hits = rng.random(400) < 0.3
    w = stats.resample_weights(400, seed=1)
    iv = stats.interval(stats.ratio(hits, np.ones(400)), stats.ratio_replicates(w, hits, np.ones(400)))
    se = math.sqrt(0.3 * 0.7 / 400)  # the binomial standard error: the 95% interval spans about +-1.96 se
    assert iv.low < iv.estimate < iv.high
    assert 2 * 1.96 * se * 0.8 < iv.high - iv.low < 2 * 1.96 * se * 1.2
    assert iv.low < 0.3 < iv.high


def test_paired_difference_is_narrower_than_independent_intervals():
    rng = np.random.default_rng(2)
    a = rng.random(300) < 0.5
    b = a.copy()
    flip = rng.random(300) < 0.05  # b differs from a on a few images only
    b[flip] = ~b[flip]
    w = stats.resample_weights(300, seed=3)
    ones = np.ones(300)
    diff = stats.ratio_replicates(w, a, ones) - stats.ratio_replicates(w, b, ones)
    paired = stats.interval(stats.ratio(a, ones) - stats.ratio(b, ones), diff)
    single = stats.interval(stats.ratio(a, ones), stats.ratio_replicates(w, a, ones))
    assert paired.high - paired.low < 0.5 * (single.high - single.low)


@pytest.mark.parametrize(
    ("low", "high", "held_if", "expected"),
    [
        (0.6, 0.8, "above", stats.HELD),
        (0.2, 0.4, "above", stats.FAILED),
        (0.4, 0.6, "above", stats.INCONCLUSIVE),
        (0.2, 0.4, "below", stats.HELD),
        (0.6, 0.8, "below", stats.FAILED),
        (0.4, 0.6, "below", stats.INCONCLUSIVE),
    ],
)
def test_verdict_needs_the_whole_interval_on_one_side(low, high, held_if, expected):
    assert stats.verdict(stats.Interval((low + high) / 2, low, high), 0.5, held_if) == expected


def test_undefined_interval_is_inconclusive_and_combine_orders_verdicts():
    assert stats.verdict(stats.Interval(math.nan, math.nan, math.nan), 0.5) == stats.INCONCLUSIVE
    assert stats.combine([stats.HELD, stats.INCONCLUSIVE]) == stats.INCONCLUSIVE
    assert stats.combine([stats.INCONCLUSIVE, stats.FAILED]) == stats.FAILED
    assert stats.combine([stats.HELD, stats.HELD]) == stats.HELD


def test_images_to_decide_grows_as_the_estimate_nears_the_threshold():
    far = stats.images_to_decide(stats.Interval(0.55, 0.45, 0.65), 0.5, 200)
    near = stats.images_to_decide(stats.Interval(0.52, 0.42, 0.62), 0.5, 200)
    assert far == 800  # the low bound 0.1 below the estimate, the threshold 0.05 below: four times the images
    assert near > far
    assert stats.images_to_decide(stats.Interval(0.5, 0.4, 0.6), 0.5, 200) is None
    # a lopsided interval (|difference| near 0): the bound toward the threshold decides, not the half-width
    assert stats.images_to_decide(stats.Interval(0.0, 0.03, 2.4), 2.0, 4000) > 4000


def test_ratio_is_nan_without_a_denominator():
    w = stats.resample_weights(5)
    assert math.isnan(stats.ratio(np.zeros(5), np.zeros(5)))
    assert np.isnan(stats.ratio_replicates(w, np.zeros(5), np.zeros(5))).all()
    assert math.isnan(stats.interval(math.nan, np.zeros(10)).low)
