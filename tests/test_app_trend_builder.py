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
    from trend_core.runtime.jobs import get_manager

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


def evaluate_small(at, k: int = 2):
    at.slider(key="tb_k").set_value(k)
    at.slider(key="tb_eps").set_value(0.15)
    at.number_input(key="tb_steps").set_value(3)
    at.number_input(key="tb_limit").set_value(12)
    at.button(key="tb_eval").click().run()
    assert_clean(at)
    return at


def test_chosen_ensemble_against_each_member_and_growth(built):
    at = evaluate_small(built, k=3)
    assert not texts(at.error)
    from trend_core.runtime.jobs import get_manager

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
    import trend_core.runtime.jobs as jobs

    before = jobs.get_manager().jobs(kind="transfer")[0]
    jobs.reset_manager()  # a restarted server: no job in memory, the store remembers
    at = open_app(PAGE)
    assert not any("starts from a finished transfer run" in m for m in texts(at.info))
    assert at.selectbox(key="tb_run").value == before.key
    at.slider(key="tb_k").set_value(2).run()
    assert_clean(at)
    assert len(at.dataframe[0].value) == 3


def boxes(at) -> list[str]:
    return texts(at.success) + texts(at.warning) + texts(at.info)


def test_the_verdict_names_the_member_that_beats_the_vote_and_results_follow_the_selection(built):
    from trend_core.runtime.jobs import get_manager

    at = evaluate_small(built)
    result = get_manager().jobs(kind="trend-eval")[0].result
    sentence = result["sentence"]
    assert sentence in boxes(at) and sentence.startswith("Under A-GD at eps 0.15")
    comparison = result["comparison"].set_index("member")
    beaten_by = [m for m in comparison.index if comparison.at[m, "verdict"] == "did not hold"]
    if result["verdict"] == "did not hold":  # the member that beats it is named, with its interval
        assert beaten_by and all(f"{m}" in sentence for m in beaten_by) and "less robust than" in sentence
    elif result["verdict"] == "held":
        assert "more robust than every member" in sentence and not beaten_by
    else:
        assert "not distinguishable from" in sentence
    assert "[" in sentence and "12 test images" in sentence
    first = at.selectbox(key="tb_choice").value
    # another candidate: nothing of the first one's evaluation stays on screen
    at.selectbox(key="tb_choice").set_value(at.dataframe[0].value["ensemble"].iloc[1]).run()
    assert_clean(at)
    assert not at.metric and sentence not in boxes(at)
    assert not [f for f in figures(at) if f["layout"]["xaxis"]["title"]["text"] == "model"]
    assert any("Press **Evaluate**" in c or "Press Evaluate" in c for c in texts(at.caption))
    # other attack settings: the same
    at.selectbox(key="tb_choice").set_value(first)
    at.number_input(key="tb_limit").set_value(11).run()
    assert not at.metric and sentence not in boxes(at)
    at.number_input(key="tb_limit").set_value(12).run()  # back to the evaluated settings: its results again
    assert sentence in boxes(at) and len(at.metric) == 2


def test_a_run_launched_on_the_page_becomes_the_pages_run(built):
    from trend_core.runtime.jobs import get_manager

    at = built
    first = at.selectbox(key="tb_run").value
    at.multiselect(key="tb_pool").set_value([FP, Q1])
    at.number_input(key="tb_pool_limit").set_value(30)
    at.button(key="tb_launch").click().run()
    assert_clean(at)
    newest = get_manager().jobs(kind="transfer")[0]
    assert newest.key != first and at.selectbox(key="tb_run").value == newest.key
    assert any("done" in m and "works from this run" in m for m in texts(at.success))
    assert list(at.multiselect(key=f"tb_candidates_{newest.key[:16]}").value) == ["FP-s0", "Q1-s0"]
    assert at.selectbox(key="tb_choice").value == "FP-s0 + Q1-s0"  # the picker names the new run's ensemble


def test_ranking_by_measured_robustness_beside_trends(built):
    at = evaluate_small(built)
    at.button(key="tb_rank").click().run()
    assert_clean(at)
    table = next(d.value for d in at.dataframe if "TREND rank" in d.value.columns)
    assert sorted(table["TREND rank"]) == [1, 2, 3]  # every candidate, ranked by accuracy under A-GD
    assert list(table["accuracy"]) == sorted(table["accuracy"], reverse=True)
    assert (table["ci_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["ci_high"]).all()
    assert any("beyond the paper" in m for m in texts(at.markdown))
    best, first = table.iloc[0], table[table["TREND rank"] == 1].iloc[0]
    notes = [m for m in texts(at.info) if "holds up better than its #1" in m]
    if best["TREND rank"] == 1:
        assert not notes
    else:  # it says whether the intervals tell TREND's #1 and the best apart, and only then that they do
        (note,) = notes
        assert ("intervals overlap" in note) == (best["ci_low"] <= first["ci_high"])


@pytest.fixture
def both_zoos(zoo_home):
    """The test zoo's 20-epoch FP-s0 with a 4-epoch FP-s0 beside it, as after the quick demo zoo (its weights are
    untrained: only its label and pool matter here)."""
    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo
    from trend_core.nn.build import build_model

    spec = ModelSpec.parse(FP + "/e4")
    Zoo(zoo_home).save(spec, build_model(spec), {"test_acc": 0.87, "val_acc": 0.87})
    return spec.name


def test_one_label_per_model_and_fully_trained_default_pools(both_zoos):
    from trend_core.runtime.jobs import get_manager

    at = open_app(PAGE)
    assert set(at.multiselect(key="tb_pool").options) >= {"FP-s0-e20", "FP-s0-e4", "FP-s1", "Q1-s0"}
    assert "FP-s0-e4" not in at.multiselect(key="tb_pool").values  # the demo's 4-epoch model is not picked
    at.multiselect(key="tb_pool").set_value([FP, both_zoos, Q1])
    at.slider(key="tb_pool_eps").set_value(0.1)
    at.number_input(key="tb_pool_steps").set_value(3)
    at.number_input(key="tb_pool_limit").set_value(20)
    at.button(key="tb_launch").click().run()
    assert_clean(at)
    run = get_manager().jobs(kind="transfer")[0].result
    assert set(run.sources) == {"FP-s0-e20", "FP-s0-e4", "Q1-s0"}  # the run's own tables say what pickers say
    key = at.selectbox(key="tb_run").value
    pool = at.multiselect(key=f"tb_candidates_{key[:16]}")
    assert pool.options == ["FP-s0-e20", "FP-s0-e4", "Q1-s0"] and list(pool.value) == ["FP-s0-e20", "Q1-s0"]
    assert any("FP-s0-e4 (trained 4 of 20 epochs)" in c for c in texts(at.caption))
    table = at.dataframe[0].value
    assert list(table["ensemble"]) == ["FP-s0-e20 + Q1-s0"] and table["min_acc"].notna().all()
    command = next(c.value for c in at.code if c.value.startswith("trend select"))
    assert "--tm trend-tm.csv -k 2" in command and "--dataset digits" in command
    at.number_input(key="tb_steps").set_value(2)
    at.number_input(key="tb_limit").set_value(8)
    at.button(key="tb_eval").click().run()
    assert_clean(at)
    bars = next(f for f in figures(at) if f["layout"]["xaxis"]["title"]["text"] == "model")["data"][0]
    assert bars["x"] == ["ensemble", "FP-s0-e20", "Q1-s0"]
    assert {m.label for m in at.metric} == {"vs FP-s0-e20 alone", "vs Q1-s0 alone"}
