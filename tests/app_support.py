"""Helpers for the Streamlit AppTest tests: a store folder holding copies of test-zoo models, synchronous
jobs, a fresh job manager, and page/figure accessors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FP, FP_S1, Q1, REPO
from streamlit.testing.v1 import AppTest

APP = str(REPO / "app.py")
APP_MODELS = (FP, FP_S1, Q1)  # FP seeds 0 and 1 (a seed family) and Q1


@pytest.fixture
def sync_jobs(monkeypatch):
    """Jobs run inline (TREND_JOBS_SYNC=1) in a job manager of this test's own."""
    import trend_core.runtime.jobs as jobs

    monkeypatch.setenv("TREND_JOBS_SYNC", "1")
    jobs.reset_manager()


@pytest.fixture
def empty_home(trend_home, sync_jobs) -> Path:
    trend_home.mkdir(parents=True, exist_ok=True)
    return trend_home


@pytest.fixture
def zoo_home(trend_home, sync_jobs, zoo_model, test_zoo) -> Path:
    """A store folder whose models/ holds copies of the test zoo's APP_MODELS (trained once, never here)."""
    from trend_core.config.specs import ModelSpec

    models = trend_home / "models"
    models.mkdir(parents=True)
    for name in APP_MODELS:
        zoo_model(name)
        key = ModelSpec.parse(name).key
        for suffix in (".json", ".safetensors"):
            shutil.copy2(test_zoo.models_dir / f"{key}{suffix}", models / f"{key}{suffix}")
    return trend_home


def open_app(page: str | None = None) -> AppTest:
    """The app after its first run, switched to ``page`` (e.g. 'pages/model_zoo.py'); fails on an exception."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page is not None:
        at.switch_page(page).run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def figures(at: AppTest) -> list[dict]:
    """Every plotly chart's figure JSON, in page order, with plotly's typed arrays decoded to nested lists."""
    return [decode_arrays(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart")]


def decode_arrays(value):
    """Plotly serializes numpy arrays as {'dtype', 'bdata' (base64), 'shape'}; turn them into lists."""
    if isinstance(value, dict):
        if set(value) >= {"dtype", "bdata"}:
            import base64

            import numpy as np

            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            if "shape" in value:
                array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
            return array.tolist()
        return {k: decode_arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_arrays(v) for v in value]
    return value


def texts(elements) -> list[str]:
    return [e.value for e in elements]
