"""The TM curve page under AppTest: pick a pair and a few eps, fit, plot the fitted TM(eps), f_st and f_ss against
the measured sweep, the RMSE table; bad input (same model twice, too few eps, eps 0, not numbers) is a message."""

from __future__ import annotations

import numpy as np
import pytest
from app_support import assert_clean, empty_home, figures, open_app, sync_jobs, texts, zoo_home  # noqa: F401
from conftest import FP, Q1

PAGE = "pages/tm_curve.py"


def test_empty_zoo_says_what_to_do_first(empty_home):
    at = open_app(PAGE)
    assert any("build the digits zoo on the Overview page" in m for m in texts(at.info))


def fit(at, source=FP, target=Q1, fit_eps="0.05, 0.1, 0.2, 0.3", points=6):
    at.selectbox(key="tc_source").set_value(source)
    at.selectbox(key="tc_target").set_value(target)
    at.text_input(key="tc_fit_eps").set_value(fit_eps)
    at.number_input(key="tc_points").set_value(points)
    at.number_input(key="tc_steps").set_value(5)
    at.number_input(key="tc_limit").set_value(40)
    at.button(key="tc_run").click().run()
    assert_clean(at)
    return at


def test_fit_plots_curves_against_the_measured_sweep_with_rmse(zoo_home):
    from trend_core.experiments.curve import saturating
    from trend_core.runtime.jobs import get_manager

    at = fit(open_app(PAGE))
    assert not texts(at.error)
    result = get_manager().jobs(kind="tm-fit")[0].result
    (fig,) = figures(at)
    traces = {t["name"]: t for t in fig["data"]}
    assert {"f_st fit", "f_ss fit", "TM fit", "TM fit points", "TM measured"} <= set(traces)
    assert fig["layout"]["title"]["text"] == "FP-s0 → Q1-s0"
    assert traces["TM fit points"]["x"] == pytest.approx([0.05, 0.1, 0.2, 0.3])
    measured = result["measured"]
    assert len(measured) == 4 + 6 - 1  # 0.3 is in both the fit and the sweep (0.02 .. 0.3)
    others = measured[~measured["used_in_fit"]]
    assert traces["TM measured"]["x"] == pytest.approx(list(others["eps"]))
    assert traces["TM measured"]["y"] == pytest.approx(list(others["tm"]), nan_ok=True)
    assert traces["f_ss measured"]["y"] == list(others["f_ss"])
    assert texts(at.warning) == result["warnings"]  # e.g. TM undefined where the source gave no adversarial image
    for eps in measured.loc[measured["f_ss"] == 0, "eps"]:
        assert any(f"undefined at eps {eps:g}" in w for w in result["warnings"])
    p = result["params"]
    eps = np.asarray(traces["f_ss fit"]["x"])
    assert traces["f_ss fit"]["y"] == pytest.approx(list(saturating(eps, p["a_ss"], p["b_ss"])))
    assert p["b_ss"] < 0 and p["a_ss"] > 0  # a rising, saturating count
    rmse = at.dataframe[0].value
    assert rmse["quantity"].iloc[0].startswith("TM")
    tm_fit = np.asarray(measured["tm_fit"])
    ok = measured["tm"].notna().to_numpy()
    expected = float(np.sqrt(np.mean((tm_fit[ok] - measured["tm"].to_numpy()[ok]) ** 2)))
    assert rmse["rmse"].iloc[0] == pytest.approx(expected)
    assert len(at.get("download_button")) == 4


@pytest.mark.parametrize(
    "source, target, fit_eps, message",
    [
        (FP, FP, "0.05, 0.1, 0.2", "same model"),
        (FP, Q1, "0.1, 0.2", "at least 3 distinct eps"),
        (FP, Q1, "0, 0.1, 0.2", "eps must be in (0, 1]"),
        (FP, Q1, "0.1, a lot", "must be numbers"),
    ],
)
def test_bad_input_becomes_a_message(zoo_home, source, target, fit_eps, message):
    at = fit(open_app(PAGE), source, target, fit_eps, points=0)
    assert any(message in m for m in texts(at.error)), texts(at.error)
    assert not at.get("plotly_chart")


def test_empty_eps_box_asks_for_three_and_hides_the_previous_result(zoo_home):
    at = fit(open_app(PAGE), fit_eps="0.05, 0.1, 0.2", points=0)
    assert not texts(at.error) and at.get("plotly_chart")  # a result on screen
    at = fit(at, fit_eps="  ", points=0)
    (error,) = texts(at.error)
    assert "empty" in error and "at least 3" in error, error
    assert not at.get("plotly_chart") and not texts(at.warning)  # the old result does not pose as the new one's
    at.number_input(key="tc_steps").set_value(6).run()  # and it stays away on the next rerun
    assert_clean(at)
    assert not at.get("plotly_chart")


def test_defaults_are_fp_against_q1(zoo_home):
    at = open_app(PAGE)
    assert (at.selectbox(key="tc_source").value, at.selectbox(key="tc_target").value) == (FP, Q1)


@pytest.fixture
def imported_home(zoo_home, digits, tmp_path):
    """The app's zoo models and an imported network, user/digits/lin (a linear classifier on pixels)."""
    from defender_support import linear_program

    from trend_core.models.zoo import Zoo

    Zoo(zoo_home).import_program("user/digits/lin", linear_program(digits, tmp_path / "lin.pt2"))
    return zoo_home


def test_an_imported_network_is_offered_and_fitted(imported_home):
    from trend_core.runtime.jobs import get_manager

    at = open_app(PAGE)
    assert "lin" in at.selectbox(key="tc_source").options and "lin" in at.selectbox(key="tc_target").options
    at = fit(at, source="user/digits/lin", target=FP, points=3)
    assert not texts(at.error)
    (job,) = get_manager().jobs(kind="tm-fit")
    assert job.meta["command"].startswith("trend fit-tm --source user/digits/lin --target " + FP)
    result = job.result
    assert (result["source"], result["target"]) == ("lin", "FP-s0")
    (fig,) = figures(at)
    traces = {t["name"]: t for t in fig["data"]}
    assert fig["layout"]["title"]["text"] == "lin → FP-s0"
    assert traces["TM fit points"]["x"] == pytest.approx([0.05, 0.1, 0.2, 0.3])
    f_ss = list(result["measured"].sort_values("eps")["f_ss"])
    assert f_ss[-1] > f_ss[0] and f_ss[-1] > 10  # PGD through the imported network succeeds more as eps grows
    assert len(traces["f_ss fit"]["y"]) > 10 and all(v == v for v in traces["f_ss fit"]["y"])
