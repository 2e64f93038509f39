"""The dashboard's analysis jobs: input checked before anything runs, results plain data that the store keeps,
so a fresh job manager (a restarted server, another session) gets them back without recomputing."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch
from app_support import sync_jobs, zoo_home  # noqa: F401
from conftest import FP, FP_S1, Q1

from trend_core.ensemble.selection import growing_ensembles
from trend_core.errors import TrendError
from trend_core.service.boundary import submit_boundary
from trend_core.service.curve import submit_tm_fit
from trend_core.service.vote_jobs import submit_ensemble_sweep, submit_trend_evaluation, submit_trend_growth


@pytest.fixture
def env(zoo_home):
    from trend_core.models.zoo import Zoo
    from trend_core.storage.store import Store

    return Zoo(zoo_home), Store(zoo_home)


def fresh_manager(monkeypatch):
    import trend_core.runtime.jobs as jobs

    jobs.reset_manager()


SUBMITS = {
    "boundary": lambda zoo, store: submit_boundary(zoo, store, [FP, Q1], 2, resolution=11),
    "ensemble-sweep": lambda zoo, store: submit_ensemble_sweep(
        zoo, store, [FP, FP_S1, Q1], [0.2], steps=2, limit=8, agreement_images=4
    ),
    "trend-eval": lambda zoo, store: submit_trend_evaluation(zoo, store, [FP, Q1], 0.15, steps=2, limit=8),
    "trend-growth": lambda zoo, store: submit_trend_growth(zoo, store, [[FP], [FP, Q1]], 0.15, steps=2, limit=8),
    "tm-fit": lambda zoo, store: submit_tm_fit(zoo, store, FP, Q1, [0.1, 0.2, 0.3], [0.15], steps=2, limit=20),
}


def same(a, b) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            same(a[key], b[key])
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


def check_boundary(result) -> None:
    assert result["names"] == ["FP-s0", "Q1-s0"] and result["reference"] == "FP-s0"
    assert result["classes"]["FP-s0"].shape == (11, 11) and result["x_offsets"][5] == 0.0


def check_sweep(result) -> None:
    assert set(result["sweep"]["rule"]) == {"dag", "empir", "ugd", "agd"}
    assert set(result["agreement"]["member"]) == {"FP-s0", "FP-s1", "Q1-s0"}
    assert result["agreement"]["agreement"].between(0, 1).all()


def check_eval(result) -> None:
    assert list(result["ratios"]["member"]) == ["FP-s0", "Q1-s0"]
    assert set(result["sweep"]["model"]) == {"ensemble", "FP-s0", "Q1-s0"}


def check_growth(result) -> None:
    assert list(result["size"]) == [1, 2] and list(result["members"]) == ["FP-s0", "FP-s0 + Q1-s0"]


def check_fit(result) -> None:
    assert list(result["measured"]["used_in_fit"]) == [True, False, True, True]
    assert result["rmse"]["quantity"].iloc[0].startswith("TM")


CHECKS = {
    "boundary": check_boundary,
    "ensemble-sweep": check_sweep,
    "trend-eval": check_eval,
    "trend-growth": check_growth,
    "tm-fit": check_fit,
}


@pytest.mark.parametrize("kind", list(SUBMITS))
def test_results_hold_what_the_pages_show_and_come_back_from_the_store(env, monkeypatch, kind):
    zoo, store = env
    job = SUBMITS[kind](zoo, store)
    assert job.error is None and job.status.value == "done" and job.kind == kind
    CHECKS[kind](job.result)
    fresh_manager(monkeypatch)  # a restarted server: only the store remembers
    again = SUBMITS[kind](zoo, store)
    assert again.from_store and again.key == job.key
    same(job.result, again.result)


def test_growing_ensembles_start_from_one_model_and_add_the_lowest_tm_partners():
    labels = ["FP", "Q1", "Q2", "HT"]
    tm = pd.DataFrame(
        [[1, 0.2, 0.3, 0.9], [0.2, 1, 0.1, 0.8], [0.3, 0.1, 1, 0.7], [0.9, 0.8, 0.7, 1]], index=labels, columns=labels
    )
    sets = growing_ensembles(tm, 3, "FP")
    assert sets == [["FP"], ["FP", "Q1"], ["FP", "Q1", "Q2"]]
    assert growing_ensembles(tm, 2, "FP", require=["HT"]) == [["FP"], ["FP", "HT"]]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda z, s: submit_boundary(z, s, [], 0), "Pick at least one model"),
        (lambda z, s: submit_boundary(z, s, [FP, Q1, FP_S1], 0), "one or two models"),
        (lambda z, s: submit_boundary(z, s, [FP], 359), "pick an index below 359"),
        (lambda z, s: submit_ensemble_sweep(z, s, [FP], [0.1]), "at least two members"),
        (lambda z, s: submit_ensemble_sweep(z, s, [FP, FP], [0.1]), "at least two members"),
        (lambda z, s: submit_ensemble_sweep(z, s, [FP, Q1], [0.0, 0.1]), "eps must be in (0, 1]"),
        (lambda z, s: submit_ensemble_sweep(z, s, [FP, "digits/resnet18-w0.25/Q4/sgd/s0"], [0.1]), "not in the zoo"),
        (lambda z, s: submit_trend_evaluation(z, s, [FP, Q1], 0.1, steps=0), "steps must be a whole number"),
        (lambda z, s: submit_tm_fit(z, s, FP, FP, [0.1, 0.2, 0.3]), "same model"),
        (lambda z, s: submit_tm_fit(z, s, FP, Q1, [0.1, 0.2]), "at least 3 distinct eps"),
    ],
)
def test_bad_input_is_one_sentence_before_anything_runs(env, call, message):
    from trend_core.runtime.jobs import get_manager

    zoo, store = env
    with pytest.raises(TrendError, match=re.escape(message)):
        call(zoo, store)
    assert not get_manager().jobs()
