"""Shared fixtures: a persistent test zoo of small trained digits models, and an isolated TREND_HOME.

Training is deterministic on the CPU, so trained test models are cached across runs in
``.trend-home/test-zoo`` (git-ignored; CI builds it once per run, a few seconds per model).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from trend_core.config.specs import ModelSpec
from trend_core.models.zoo import Zoo
from trend_core.storage.locks import file_lock

REPO = Path(__file__).resolve().parents[1]
TEST_ZOO_DIR = Path(os.environ.get("TREND_TEST_ZOO", REPO / ".trend-home" / "test-zoo"))

# Small digits models the tests share (names parse with ModelSpec.parse).
FP = "digits/resnet18-w0.25/FP/sgd/s0"
FP_S1 = "digits/resnet18-w0.25/FP/sgd/s1"
Q1 = "digits/resnet18-w0.25/Q1/sgd/s0"
Q2 = "digits/resnet18-w0.25/Q2/sgd/s0"
HT = "digits/resnet18-w0.25/HT/sgd/s0"

# One torch thread per core left to this test process: with `pytest -n 2` (pytest-xdist, the README's test
# command) two processes share a 2-core machine, one thread each; a plain `pytest` run gets up to two.
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // XDIST_WORKERS)))


@pytest.fixture(scope="session")
def test_zoo() -> Zoo:
    """The persistent zoo of trained test models (shared by every test, trained on first use; the five most
    used are trained together at the start, side by side on a multi-core machine)."""
    zoo = Zoo(TEST_ZOO_DIR)
    with file_lock(TEST_ZOO_DIR / ".first-models.lock"):  # one xdist worker trains them, the other waits
        zoo.train_many([FP, FP_S1, Q1, Q2, HT], device="cpu")
    return zoo


@pytest.fixture(scope="session")
def zoo_model(test_zoo):
    """``zoo_model(name)`` -> the trained model (eval mode, CPU), training it on first use."""
    cache: dict[str, torch.nn.Module] = {}

    def get(name: str) -> torch.nn.Module:
        if name not in cache:
            with file_lock(TEST_ZOO_DIR / f".train-{ModelSpec.parse(name).key}.lock"):  # trained once, not per worker
                cache[name] = test_zoo.get_or_train(name, device="cpu")
        return cache[name].eval()

    return get


@pytest.fixture(scope="session")
def digits():
    from trend_core.data.datasets import load_dataset

    return load_dataset("digits")


@pytest.fixture
def trend_home(tmp_path, monkeypatch) -> Path:
    """An empty, isolated store for tests that write (zoo, results cache, jobs)."""
    home = tmp_path / "trend-home"
    monkeypatch.setenv("TREND_HOME", str(home))
    return home


@pytest.fixture
def linked_zoo_home(trend_home, zoo_model) -> Path:
    """An isolated TREND_HOME (own results cache) whose models/ is the trained test zoo: nothing retrains."""
    for name in (FP, Q1, Q2):
        zoo_model(name)
    trend_home.mkdir(parents=True, exist_ok=True)
    (trend_home / "models").symlink_to(TEST_ZOO_DIR / "models", target_is_directory=True)
    return trend_home
