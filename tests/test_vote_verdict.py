"""Is the vote more robust than every member? The paired verdict (trend_core.ensemble.verdict) names the member
that beats the ensemble, says 'more robust than every member' only when every paired interval lies above 0, and
otherwise says which member it cannot be told apart from, on how many images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trend_core.ensemble.verdict import accuracy_interval, compare_with_members, overall_verdict, verdict_sentence
from trend_core.errors import TrendError


def correct(rate: float, n: int = 400, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < rate).astype(float)


def test_a_member_that_beats_the_vote_is_named_with_intervals():
    # the case: FP+HT+Q4 keeps 65.7% under A-GD, HT alone 77%, FP 23%
    outcomes = {
        "ensemble": correct(0.657),
        "FP-s0": correct(0.23, seed=1),
        "HT-s0": correct(0.77, seed=2),
        "Q4-s0": correct(0.30, seed=3),
    }
    comparisons = compare_with_members(outcomes)
    by_member = {c.member: c for c in comparisons}
    assert by_member["HT-s0"].verdict == "did not hold" and by_member["HT-s0"].difference.high < 0
    assert by_member["FP-s0"].verdict == "held" and by_member["FP-s0"].difference.low > 0
    assert overall_verdict(comparisons) == "did not hold"
    sentence = verdict_sentence(comparisons, "Under A-GD at eps 0.1")
    assert sentence.startswith("Under A-GD at eps 0.1, the ensemble is less robust than HT-s0 alone")
    assert "more robust than every member" not in sentence and "400 test images" in sentence
    assert "[" in sentence  # intervals, not bare numbers


def test_more_robust_than_every_member_only_when_every_interval_is_above_zero():
    base = correct(0.3, seed=4)
    vote = np.maximum(base, correct(0.5, seed=5))  # right wherever the member is, and more
    comparisons = compare_with_members({"ensemble": vote, "A": base, "B": correct(0.2, seed=6)})
    assert overall_verdict(comparisons) == "held"
    assert "more robust than every member" in verdict_sentence(comparisons, "Under A-GD")


def test_a_tie_is_not_distinguishable_and_says_on_how_many_images():
    same = correct(0.5, n=60, seed=7)
    twin = same.copy()
    twin[:2] = 1 - twin[:2]  # two images differ
    comparisons = compare_with_members({"ensemble": same, "FP-s0": correct(0.1, n=60, seed=8), "HT-s0": twin})
    assert overall_verdict(comparisons) == "inconclusive"
    sentence = verdict_sentence(comparisons, "Under the audit's worst case at eps 0.1")
    assert "more robust than FP-s0 but not distinguishable from HT-s0 on 60 images" in sentence


def test_pairing_narrows_the_interval_and_fractional_votes_count():
    member = correct(0.6, seed=9)
    vote = np.clip(member + 0.5 * correct(0.2, seed=10), 0, 1)  # expected correctness under tie-breaks
    (comparison,) = compare_with_members({"ensemble": vote, "M": member})
    width = comparison.difference.high - comparison.difference.low
    unpaired = accuracy_interval(vote).high - accuracy_interval(vote).low
    assert comparison.verdict == "held" and width < unpaired
    assert comparison.difference.estimate == pytest.approx(vote.mean() - member.mean())
    row = comparison.as_row()
    assert row["member"] == "M" and row["difference_ci_low"] > 0 and row["n_images"] == 400


def test_mismatched_images_are_refused():
    with pytest.raises(TrendError, match="images"):
        compare_with_members({"ensemble": correct(0.5, n=10), "M": correct(0.5, n=12)})
    with pytest.raises(TrendError, match="vote"):
        compare_with_members(pd.DataFrame({"M": correct(0.5, n=10)}).to_dict("series"))
