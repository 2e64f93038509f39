"""The app frame under AppTest: overview, sidebar, starter zoo from the page, and the shared UI helpers."""

from __future__ import annotations

import pytest
from app_support import APP_MODELS, assert_clean, empty_home, open_app, sync_jobs, texts, zoo_home  # noqa: F401
from streamlit.testing.v1 import AppTest


def test_overview_explains_the_app_and_offers_a_starter_zoo_when_empty(empty_home):
    at = open_app()
    assert at.title[0].value == "TREND Lab"
    assert "TREND" in at.caption[0].value and "ensemble" in at.caption[0].value
    assert any("no digits models yet" in m for m in texts(at.info))
    labels = [b.label for b in at.button]
    assert "Build the default digits zoo" in labels and "Quick demo zoo (3 models)" in labels
    assert [s.label for s in at.sidebar.selectbox] == ["Dataset", "Store folder"]
    assert at.sidebar.radio[0].options == ["Auto", "CPU", "CUDA"]
    assert any(c.startswith("Found: ") for c in texts(at.sidebar.caption))
    assert at.sidebar.selectbox[1].value == str(empty_home)


def test_quick_demo_button_trains_the_demo_zoo_as_a_job(empty_home, monkeypatch):
    import trend_ui.zoo_actions

    tiny = "digits/resnet18-w0.25/FP/sgd/s0/e1"  # one 1-epoch model stands in for the demo zoo
    # seam: the demo zoo's models are a product constant (no setting); one 1-epoch model keeps the test fast
    monkeypatch.setattr(trend_ui.zoo_actions, "QUICK_DEMO", (tiny,))
    at = open_app()
    at.toggle(key="warm_defaults").set_value(False)  # (test_app_warmup.py covers the pages' warm-up)
    at.button(key="build_demo_zoo").click().run()
    assert_clean(at)
    assert any(s.startswith("Training 1 model: done") for s in texts(at.success))
    assert not any("default run" in s for s in texts(at.success))  # switched off: no warm-up
    table = at.dataframe[0].value
    assert list(table["name"]) == [tiny] and table["test acc %"].between(0, 100).all()
    assert "build_demo_zoo" not in [b.key for b in at.button]  # the zoo is no longer empty


def test_overview_lists_the_zoo_with_accuracies(zoo_home):
    at = open_app()
    table = at.dataframe[0].value
    assert sorted(table["name"]) == sorted(APP_MODELS)
    assert (table["test acc %"] > 80).all()
    assert "Complete the default digits zoo (9 missing)" in [b.label for b in at.button]  # 3 of 12 are preset models


def test_store_folder_in_the_sidebar_switches_the_zoo(zoo_home, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    monkeypatch.setenv("TREND_HOMES", str(other))  # the operator offers a second store folder
    at = open_app()
    assert len(at.dataframe[0].value) == len(APP_MODELS)
    at.sidebar.selectbox[1].set_value(str(other)).run()
    assert_clean(at)
    assert any(f"The zoo at {other} has no digits models" in m for m in texts(at.info))


def test_cuda_without_a_gpu_is_a_message_not_a_traceback(empty_home):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    at = open_app()
    at.sidebar.radio[0].set_value("cuda").run()
    assert_clean(at)
    assert any("No CUDA GPU" in e for e in texts(at.sidebar.error))


def _guarded_page():
    import streamlit as st

    import trend_ui
    from trend_core.errors import TrendError

    choice = st.radio("what", ["trend", "bug", "fine"], key="what")
    with trend_ui.guard("The demo"):
        if choice == "trend":
            raise TrendError("Pick at least one model.")
        if choice == "bug":
            raise ZeroDivisionError("division by zero\nsecond line")
        st.write("fine")
    st.write("after")


def test_guard_turns_errors_into_one_sentence_and_the_page_goes_on():
    at = AppTest.from_function(_guarded_page, default_timeout=60).run()
    assert_clean(at)
    assert texts(at.error) == ["Pick at least one model."]
    at.radio(key="what").set_value("bug").run()
    assert_clean(at)
    (message,) = texts(at.error)
    assert message.startswith("The demo hit an unexpected error (ZeroDivisionError: division by zero)")
    assert "\n" not in message and "Traceback" not in message
    assert "after" in texts(at.markdown)


def _job_page():
    import streamlit as st

    import trend_ui
    from trend_core.errors import TrendError
    from trend_core.runtime.jobs import JobManager

    manager = JobManager(sync=True)

    def fail(job):
        raise TrendError("eps must be positive, got 0.")

    failed = manager.submit("fail", fail, title="Failing job")
    done = manager.submit("done", lambda job: {"answer": 42}, title="Answer")
    st.write(f"failed result: {trend_ui.job_panel(failed)}")
    st.write(f"done result: {trend_ui.job_panel(done, show_done=True)}")
    import pandas as pd

    trend_ui.download_frame(pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"], name="model")), "table")


def _yielded_job_page():
    import threading

    import streamlit as st

    import trend_ui
    from trend_core.runtime.jobs import JobManager

    manager, started = JobManager(sync=False), threading.Event()

    def warm_up_run(job):
        started.set()
        while True:  # until it yields to the click below
            job.progress(0.5, "warming up")
            threading.Event().wait(0.005)

    paused = manager.submit("w", warm_up_run, title="Default run", device="cpu", background=True)
    started.wait(10)
    manager.submit("click", lambda job: "mine", title="My run", device="cpu").wait(10)
    paused.wait(10)
    st.write(f"paused result: {trend_ui.job_panel(paused)}")


def test_job_panel_says_a_warm_up_run_paused_for_the_presenters_run_without_an_error():
    at = AppTest.from_function(_yielded_job_page, default_timeout=60).run()
    assert_clean(at)
    assert not texts(at.error) and "paused result: None" in texts(at.markdown)
    assert any(i.startswith("Default run was paused for your run") for i in texts(at.info)), texts(at.info)


def test_job_panel_shows_failures_and_returns_results_and_downloads_offer_csv_and_json():
    at = AppTest.from_function(_job_page, default_timeout=60).run()
    assert_clean(at)
    assert texts(at.error) == ["eps must be positive, got 0."]
    assert "failed result: None" in texts(at.markdown)
    assert "done result: {'answer': 42}" in texts(at.markdown)
    assert any(s.startswith("Answer: done") for s in texts(at.success))
    buttons = at.get("download_button")
    assert [b.proto.label for b in buttons] == ["Download CSV", "Download JSON"]
