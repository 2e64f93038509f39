"""The experiment recipes written once in the engine and called by jobs, CLI, pages and the reproduce pipeline:
A-GD against a vote with per-image outcomes, the growth curve, the growth curve's first member, the eps grids
the pages sweep, and the progress ticker for work announced as it starts."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import FP, Q1

from trend_core.ensemble.selection import growing_ensembles, growth_start
from trend_core.experiments.grids import measured_eps, spaced_eps
from trend_core.experiments.vote_robustness import GROWTH_COLUMNS, agd_evaluation, growth_curve
from trend_core.nn.vote import MajorityVote
from trend_core.storage.store import MemoryStore


def test_agd_evaluation_and_growth_curve_agree_on_the_same_vote(zoo_model, digits):
    members = [zoo_model(n) for n in (FP, Q1)]
    data = digits.tensors("test", limit=12)
    store = MemoryStore()
    vote = MajorityVote(members)
    sweep, per_image = agd_evaluation(vote, 0.15, 3, data=data, cache=store, device="cpu")
    assert list(per_image.columns) == ["ensemble", *vote.names] and len(per_image) == 12
    ens = sweep[sweep["model"] == "ensemble"].iloc[0]
    assert float(ens["accuracy"]) == pytest.approx(per_image["ensemble"].mean())
    starts = []
    curve = growth_curve(
        [MajorityVote(members[:1]), vote],
        0.15,
        3,
        data=data,
        cache=store,
        device="cpu",
        starting=lambda i, v: starts.append((i, tuple(v.names))),
    )
    assert list(curve.columns) == GROWTH_COLUMNS and list(curve["size"]) == [1, 2]
    assert starts == [(0, tuple(vote.names[:1])), (1, tuple(vote.names))]
    two = curve.iloc[1]
    assert two["members"] == " + ".join(vote.names)
    assert two["accuracy"] == pytest.approx(float(ens["accuracy"]))  # the same attack, read back from the store
    assert two["ci_low"] <= two["accuracy"] <= two["ci_high"]


def test_growth_starts_from_the_first_required_model_else_the_most_accurate():
    pool = ["A", "B", "C"]
    assert growth_start(pool, ["C", "A"], {"A": 0.9, "B": 0.95}) == "C"
    assert growth_start(pool, [], {"A": 0.9, "B": 0.95, "C": 0.5}) == "B"
    assert growth_start(pool, [], {}) == "A"  # no accuracies: the first candidate
    tm = pd.DataFrame([[1.0, 0.2, 0.9], [0.2, 1.0, 0.3], [0.9, 0.3, 1.0]], index=pool, columns=pool)
    assert growing_ensembles(tm, 3, growth_start(pool, [], {"B": 1.0})) == [["B"], ["A", "B"], ["A", "B", "C"]]


def test_eps_grids_the_pages_sweep():
    assert spaced_eps(0.0, 0.3, 4, 0.005) == [0.0, 0.1, 0.2, 0.3]
    grid = spaced_eps(0.01, 0.2, 4, 0.005)  # 0.0733.. and 0.1366.. land on the slider's grid
    assert grid[0] == 0.01 and grid[-1] == 0.2 and len(grid) == 4
    assert all(abs(v / 0.005 - round(v / 0.005)) < 1e-6 for v in grid)
    assert spaced_eps(0.1, 0.1, 3, 0.005) == [0.1]  # duplicates dropped
    dense = measured_eps("digits", [0.05, 0.6], 12)
    assert len(dense) == 12 and dense[-1] == pytest.approx(0.6) and dense == sorted(dense)  # stretched to 0.6
    assert all(len(f"{v:.10g}".lstrip("0.").rstrip("0")) <= 3 for v in dense)  # three significant digits
    assert measured_eps("digits", [0.05, 0.1, 0.2], 0) == []
