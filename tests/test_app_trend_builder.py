"""The TREND builder page under AppTest: from a finished transfer run, sliders for size, required members and an
accuracy floor give ranked candidates; the chosen ensemble is measured against each member under A-GD, and
robustness as the ensemble grows; bad input becomes a message."""
from __future__ import annotations

import itertools

import pytest

from app_support import assert_clean, empty_home, figures, open_app, sync_jobs, texts, zoo_home  # noqa: F401
from conftest import FP, FP_S1, Q1

PAGE = "pages/trend_builder.py"
POOL = (FP, FP_S1, Q1)
LABELS = ["FP-s0", "FP-s1", "Q1-s0"]


def test_empty_zoo_says_what_to_do_first(empty_home):
    at = open_app(PAGE)
    assert any("build the digits zoo on the Overview page" in m for m in texts(at.info))


def test_without_a_transfer_run_it_says_so_and_a_pool_of_one_is_refused(zoo_home):
    at = open_app(PAGE)
    assert any("starts from a finished transfer run" in m for m in texts(at.info))
    at.multiselect(key="tb_pool").set_value([FP])
    at.button(key="tb_launch").click().run()
    assert_clean(at)
    assert any("at least two models" in m for m in texts(at.error))


@pytest.fixture
def built(zoo_home):
    """The page after a transfer run over the pool, launched from the page itself."""
    at = open_app(PAGE)
    at.multiselect(key="tb_pool").set_value(list(POOL))
    at.slider(key="tb_pool_eps").set_value(0.1)
    at.number_input(key="tb_pool_steps").set_value(5)
    at.number_input(key="tb_pool_limit").set_value(40)
    at.button(key="tb_launch").click().run()
    assert_clean(at)
    assert not texts(at.error)
    return at


def symmetric_tm() -> dict:
    from trend_core.jobs import get_manager

    result = get_manager().jobs(kind="transfer")[0].result
    tm = result.matrix(averages=False)
    return {frozenset((a, b)): (tm.loc[a, b] + tm.loc[b, a]) / 2 for a, b in itertools.combinations(LABELS, 2)}


def test_candidates_are_ranked_by_mean_pairwise_tm_and_honour_the_sliders(built):
    at = built
    sym = symmetric_tm()
    at.slider(key="tb_k").set_value(2).run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert len(table) == 3  # every pair of the three models
    for ensemble, score in zip(table["ensemble"], table["mean pair TM"]):
        assert score == pytest.approx(sym[frozenset(ensemble.split(" + "))])
    scores = list(table["mean pair TM"])
    assert scores == sorted(scores)
    assert scores[0] == pytest.approx(min(sym.values()))
    at.multiselect(key="tb_require").set_value(["FP-s1"]).run()
    table = at.dataframe[0].value
    assert len(table) == 2 and all("FP-s1" in e.split(" + ") for e in table["ensemble"])
    at.slider(key="tb_floor").set_value(99).run()
    assert_clean(at)
    assert any("below the floor" in m or "pass the filters" in m for m in texts(at.error))


def test_chosen_ensemble_against_each_member_and_growth(built):
    at = built
    at.slider(key="tb_k").set_value(3)
    at.slider(key="tb_eps").set_value(0.15)
    at.number_input(key="tb_steps").set_value(3)
    at.number_input(key="tb_limit").set_value(12)
    at.button(key="tb_eval").click().run()
    assert_clean(at)
    assert not texts(at.error)
    from trend_core.jobs import get_manager

    result = get_manager().jobs(kind="trend-eval")[0].result
    bars = next(f for f in figures(at) if f["layout"]["xaxis"]["title"]["text"] == "model")["data"][0]
    assert bars["x"] == ["ensemble", *LABELS]
    sweep = result["sweep"].set_index("model")["accuracy"]
    assert bars["y"] == pytest.approx([sweep[m] for m in bars["x"]])
    ratios = result["ratios"].set_index("member")["times_more_robust"]
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {f"vs {m} alone" for m in LABELS}
    for member in LABELS:
        if ratios[member] == ratios[member] and ratios[member] != float("inf"):
            assert metrics[f"vs {member} alone"] == f"{ratios[member]:.2f}x"
    at.slider(key="tb_grow_max").set_value(3)
    at.button(key="tb_grow").click().run()
    assert_clean(at)
    growth = next(f for f in figures(at) if f["layout"]["xaxis"]["title"]["text"] == "ensemble size")
    assert [t["name"] for t in growth["data"]] == ["clean", "A-GD eps 0.15"]
    assert growth["data"][1]["x"] == [1, 2, 3]
    frame = get_manager().jobs(kind="trend-growth")[0].result
    assert growth["data"][1]["y"] == pytest.approx(list(frame["accuracy"]))
    assert frame["members"].iloc[0] in LABELS and frame["members"].iloc[-1].count(" + ") == 2


def test_eps_zero_is_a_message(built):
    at = built
    at.slider(key="tb_eps").set_value(0.0)
    at.button(key="tb_eval").click().run()
    assert_clean(at)
    assert any("eps must be in (0, 1]" in m for m in texts(at.error))


def test_finished_runs_are_listed_after_a_server_restart(built, monkeypatch):
    import trend_core.jobs as jobs

    before = jobs.get_manager().jobs(kind="transfer")[0]
    monkeypatch.setattr(jobs, "_MANAGER", None)  # a restarted server: no job in memory, the store remembers
    at = open_app(PAGE)
    assert not any("starts from a finished transfer run" in m for m in texts(at.info))
    assert at.selectbox(key="tb_run").value == before.key
    at.slider(key="tb_k").set_value(2).run()
    assert_clean(at)
    assert len(at.dataframe[0].value) == 3
