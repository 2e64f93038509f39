"""Transfer sources attacked in worker processes: the same images and pairs as one process, the store written
once by the parent, cancel and progress as in the one-process loop, executor="local" keeps one process."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import FP, HT, Q2

from trend_core.attacks import PGD
from trend_core.experiments import parallel_sources
from trend_core.experiments.transfer import run_transfer
from trend_core.experiments.transfer_keys import TransferCancelled
from trend_core.storage.store import MemoryStore
from trend_core.training.threads import cpu_threads

LIMIT = 48


class CountingStore(MemoryStore):
    """A memory store that counts the writes of each key (made in this process: workers get no store)."""

    def __init__(self):
        super().__init__()
        self.writes: dict[str, int] = {}

    def set(self, key, value):
        self.writes[key] = self.writes.get(key, 0) + 1
        return super().set(key, value)


@pytest.fixture
def models(zoo_model):
    return [zoo_model(FP), zoo_model(Q2), zoo_model(HT)]


@pytest.fixture
def two_cores(monkeypatch):
    """Two workers even on a one-core or busy machine (the test checks the plumbing, not the speed), and no pool
    left by an earlier test: ``worker_count()`` then says whether this test's run started workers."""
    monkeypatch.setenv(parallel_sources.WORKERS_ENV, "2")
    parallel_sources.stop_workers()


def _attack():
    return PGD(eps=0.1, steps=5)


def _run(models, executor, **options):
    with cpu_threads(1):  # the one-process reference attacks on one thread, as the CLI does for digits
        return run_transfer(models, _attack(), limit=LIMIT, device="cpu", executor=executor, **options)


def test_workers_give_bit_identical_images_and_pairs(models, two_cores, monkeypatch):
    alone = _run(models, "local", cache=CountingStore())
    assert parallel_sources.worker_count() == 0  # executor="local": one process
    store = CountingStore()
    together = _run(models, None, cache=store)
    assert parallel_sources.worker_count() == 2
    pd.testing.assert_frame_equal(alone.pairs, together.pairs)
    for source in alone.sources:
        assert torch.equal(alone.details.adv_loader(source), together.details.adv_loader(source))
        assert torch.equal(alone.details.success[source], together.details.success[source])
    assert alone.details.adv_pred.keys() == together.details.adv_pred.keys()
    assert list(alone.details.adv_pred) == list(together.details.adv_pred)  # same order as one process
    for pair, pred in alone.details.adv_pred.items():
        assert torch.equal(pred, together.details.adv_pred[pair])
    assert set(store.writes.values()) == {1}  # every entry written once, by the parent
    assert len(store.writes) >= 3 * 2 + 3 * 2  # per source: its summary and images, and its two targets' predictions


def test_progress_is_monotone_and_cached_rerun_attacks_nothing(models, two_cores):
    store = CountingStore()
    seen: list[tuple[float, str]] = []
    _run(models, None, cache=store, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and len(fractions) == 3 and fractions[-1] == pytest.approx(1.0)
    assert not any("(cached)" in m for _, m in seen)
    parallel_sources.stop_workers()
    seen.clear()
    store.writes.clear()
    _run(models, None, cache=store, progress=lambda f, m: seen.append((f, m)))
    assert len(seen) == 3 and all("(cached)" in m for _, m in seen)
    assert parallel_sources.worker_count() == 0 and not store.writes  # no worker started, nothing attacked anew


def test_cancel_stops_the_run_and_the_pool_serves_the_next(models, two_cores):
    store = MemoryStore()
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(TransferCancelled):
        _run(models, None, cache=store, cancel=cancel)
    result = _run(models[:2], None, cache=MemoryStore())
    assert set(result.sources) == {r for r in result.pairs["source"]}


def test_local_executor_stays_in_one_process(models, two_cores):
    result = _run(models, "local")
    assert len(result.sources) == 3 and parallel_sources.worker_count() == 0


def test_tm_eps_points_of_one_source_run_in_workers_bit_identical(models, two_cores):
    eps = [0.05, 0.1, 0.2]
    with cpu_threads(1):
        alone = run_transfer(models[:2], _attack(), sources=[0], epsilons=eps, limit=LIMIT, executor="local")
        together = run_transfer(models[:2], _attack(), sources=[0], epsilons=eps, limit=LIMIT)
    assert parallel_sources.worker_count() == 2  # three eps points of one source: two workers
    for a, b in zip(alone, together):
        assert a.eps == b.eps
        pd.testing.assert_frame_equal(a.pairs, b.pairs)
        source = a.sources[0]
        assert torch.equal(a.details.adv_loader(source), b.details.adv_loader(source))


def test_ensemble_sweep_points_run_in_workers_bit_identical(models, two_cores):
    from trend_core.experiments.ensemble_sweep import robustness_sweep

    def sweep(executor):
        with cpu_threads(1):
            return robustness_sweep(
                models[:2], [0.1, 0.2], ["agd"], steps=4, members_alone=True, limit=LIMIT, executor=executor
            )

    alone = sweep("local")
    assert parallel_sources.worker_count() == 0
    together = sweep(None)
    assert parallel_sources.worker_count() == 2  # the ensemble and its two members, each at two eps: six units
    pd.testing.assert_frame_equal(alone, together)


def test_busy_cores_keep_one_process(monkeypatch):
    monkeypatch.delenv(parallel_sources.WORKERS_ENV, raising=False)
    measured = parallel_sources.idle_cores(0.02)
    assert 0.0 <= measured <= parallel_sources.available_cores() + 1e-9
    monkeypatch.setenv("TREND_CORES", "2")
    x = torch.zeros(4, 1, 8, 8)
    idle = [0.1]  # cores idle now: busy
    # seam: how busy the machine's cores are is read from /proc/stat; no setting can make them busy or idle
    monkeypatch.setattr(parallel_sources, "idle_cores", lambda: idle[0])
    assert parallel_sources.source_workers(6, x, torch.device("cpu"), None) == 0
    idle[0] = 1.5
    assert parallel_sources.source_workers(6, x, torch.device("cpu"), None) == 2
    assert parallel_sources.source_workers(6, x, torch.device("cpu"), "local") == 0
    assert parallel_sources.source_workers(6, torch.zeros(4, 3, 32, 32), torch.device("cpu"), None) == 0
    idle[0] = 0.1
    monkeypatch.setenv(parallel_sources.WORKERS_ENV, "2")  # forced: busy cores or not
    assert parallel_sources.source_workers(6, x, torch.device("cpu"), None) == 2
