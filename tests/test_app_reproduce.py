"""The Reproduce page under AppTest: launch a (miniature) reproduction as a job, read the findings table, the
figures and the downloads; after a server restart the finished report comes back from the store."""

from __future__ import annotations

import pytest
from app_support import assert_clean, figures, open_app, sync_jobs, texts, zoo_home  # noqa: F401
from conftest import FP, FP_S1, Q1

PAGE = "pages/reproduce.py"
TINY = {
    "models": {"FP": FP, "FP-s1": FP_S1, "Q1": Q1},
    "limit": 10,
    "pgd_steps": 2,
    "cw_steps": 3,
    "cw_search_steps": 1,
    "deepfool_steps": 3,
    "ensemble_steps": 2,
    "ensemble_eps": (0.1,),
    "fit_steps": 2,
    "sweep_eps": (0.02, 0.1, 0.2, 0.3),
    "boundary_resolution": 5,
    "agreement_images": 2,
}


@pytest.fixture
def tiny_settings(monkeypatch):
    """The page's reproductions use the three models of the app's test store and a few steps."""
    from trend_core.reproduce import pipeline
    from trend_core.reproduce.settings import settings_for

    # seam: the page offers only the product's scales; no setting makes a reproduction smaller than "mini"
    monkeypatch.setattr(
        pipeline,
        "settings_for",
        lambda dataset, scale, profile="paper", **kw: settings_for(dataset, scale, profile, **TINY),
    )


def launch(at, scale="mini"):
    at.radio(key="rp_scale").set_value(scale)
    at.button(key="rp_run").click().run(timeout=600)
    assert_clean(at)
    return at


def test_before_any_run_the_page_says_what_to_do(zoo_home, tiny_settings):
    at = open_app(PAGE)
    assert any("No quick reproduction on digits yet" in m for m in texts(at.info))
    assert not at.get("plotly_chart")


def test_a_run_shows_the_findings_figures_and_downloads_and_survives_a_restart(zoo_home, tiny_settings):
    import trend_core.runtime.jobs as jobs
    from trend_core.reproduce.judging import VERDICTS

    at = launch(open_app(PAGE))
    assert not texts(at.error)
    findings = at.dataframe[0].value
    assert list(findings["finding"]) == list(range(1, 9))
    assert set(findings["verdict"]) <= set(VERDICTS)
    assert sum(int(m.value) for m in at.metric) == 8  # the verdict counts add up to the eight findings
    titles = [f.get("layout", {}).get("title", {}).get("text", "") for f in figures(at)]
    assert any(t.startswith("TM") for t in titles) and any("A-GD" in t for t in titles)
    assert len(at.get("download_button")) == 2
    assert any(c.value.startswith("trend reproduce --dataset digits --scale mini") for c in at.code)
    assert list(at.dataframe[0].proto.column_order[:2]) == ["finding", "verdict"]  # the verdict stays in view
    job = jobs.get_manager().jobs(kind="reproduce")[0]
    assert not job.from_store and job.result["settings"]["scale"] == "mini"

    jobs.reset_manager()  # a restarted server knows no jobs
    again = open_app(PAGE)
    again.radio(key="rp_scale").set_value("mini").run()
    assert_clean(again)
    assert list(again.dataframe[0].value["verdict"]) == list(findings["verdict"])
    assert jobs.get_manager().get(job.key).from_store  # shown from the store: nothing ran again


def test_a_dataset_it_cannot_reproduce_is_a_message(zoo_home, tiny_settings):
    at = open_app()
    at.sidebar.selectbox(key="sb_dataset").set_value("imagenet").run()
    at.switch_page(PAGE).run()
    assert_clean(at)
    assert any("pick one of them in the sidebar" in m for m in texts(at.info))
