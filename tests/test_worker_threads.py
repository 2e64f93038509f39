"""Worker processes for transfer sources started from a thread other than the main one (a dashboard job): they
come from a fork server, never a fork of the multi-threaded process, and give the one-process images bit for bit."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import torch
from conftest import FP, HT, Q2

from trend_core.attacks import PGD
from trend_core.experiments import parallel_sources
from trend_core.experiments.transfer import run_transfer
from trend_core.storage.store import MemoryStore
from trend_core.training.threads import cpu_threads

LIMIT = 32


class RecordingStore(MemoryStore):
    """A memory store that also keeps what was written, to compare two runs entry by entry."""

    def __init__(self):
        super().__init__()
        self.written: dict = {}

    def set(self, key, value):
        self.written[key] = value
        return super().set(key, value)


def _run(models, executor):
    with cpu_threads(1):
        return run_transfer(models, PGD(eps=0.1, steps=4), limit=LIMIT, device="cpu", executor=executor)


def _in_thread(fn):
    """``fn()`` run in a new thread, as the dashboard runs its jobs; its result or its exception."""
    out: dict = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(300)
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.slow
def test_a_job_thread_gets_fork_server_workers_with_identical_images(zoo_model, monkeypatch):
    monkeypatch.setenv(parallel_sources.WORKERS_ENV, "2")  # workers even on a busy machine
    models = [zoo_model(FP), zoo_model(Q2), zoo_model(HT)]
    alone = _run(models, "local")
    together = _in_thread(lambda: _run(models, None))
    assert parallel_sources.worker_start() == "forkserver"  # the workers did run, and were not forked from here
    pd.testing.assert_frame_equal(alone.pairs, together.pairs)
    for source in alone.sources:
        assert torch.equal(alone.details.adv_loader(source), together.details.adv_loader(source))
    again = _run(models, None)  # the main thread: its own forked pool again
    assert parallel_sources.worker_start() == "fork"
    pd.testing.assert_frame_equal(alone.pairs, again.pairs)


def test_a_class_from_main_stays_in_process_off_the_main_thread(zoo_model, monkeypatch):
    import __main__

    local = type("LocalLoss", (), {"__module__": "__main__", "__qualname__": "LocalLoss"})
    monkeypatch.setattr(__main__, "LocalLoss", local, raising=False)  # a class a notebook or script defines
    attack = PGD(eps=0.1, steps=1)
    attack.loss_class = local  # an attack holding it: only forked copies of this process can unpickle it
    model = zoo_model(FP)
    assert parallel_sources.movable(model, attack) is True  # the main thread forks: the class travels
    assert _in_thread(lambda: parallel_sources.movable(model, attack)) is False
    assert _in_thread(lambda: parallel_sources.movable(model, PGD(eps=0.1, steps=1))) is True


def test_the_dashboard_prestarts_fork_server_workers_unless_told_to_stay_local(monkeypatch):
    monkeypatch.setenv("TREND_EXECUTOR", "local")
    assert _in_thread(parallel_sources.prestart_workers) == 0
    monkeypatch.delenv("TREND_EXECUTOR")
    monkeypatch.setenv(parallel_sources.WORKERS_ENV, "1")
    assert _in_thread(parallel_sources.prestart_workers) == 0
    monkeypatch.setenv(parallel_sources.WORKERS_ENV, "2")
    assert _in_thread(parallel_sources.prestart_workers) == 2
    assert parallel_sources.worker_start() == "forkserver" and parallel_sources.worker_count() == 2


@pytest.mark.slow
def test_the_ensemble_attacks_page_sweep_in_workers_equals_one_process(linked_zoo_home, monkeypatch):
    """The page's sweep attacks its (rule, eps) points one per core, each recording its members' agreement as
    the in-process attack does: the same table and the same agreement, bit for bit."""
    from conftest import Q1

    from trend_core.models.zoo import Zoo
    from trend_core.runtime.jobs import JobManager, JobStatus
    from trend_core.service.vote_jobs import submit_ensemble_sweep
    from trend_core.storage.store import MemoryStore

    def sweep(executor: str | None):
        if executor:
            monkeypatch.setenv("TREND_EXECUTOR", executor)
        else:
            monkeypatch.delenv("TREND_EXECUTOR", raising=False)
        job = submit_ensemble_sweep(
            Zoo(linked_zoo_home),
            MemoryStore(),
            [FP, Q1, Q2],
            [0.05, 0.1],
            steps=3,
            limit=40,
            device="cpu",
            manager=JobManager(sync=False),
        )
        job.wait(300)
        assert job.status is JobStatus.DONE, job.error
        return job.result, (job.fraction, job.message)

    monkeypatch.setenv(parallel_sources.WORKERS_ENV, "2")
    parallel_sources.stop_workers()
    alone, _ = sweep("local")
    assert parallel_sources.worker_count() == 0  # one process: no pool was started
    together, (fraction, message) = sweep(None)
    assert parallel_sources.worker_start() == "forkserver"  # the job's thread used fork-server workers
    assert fraction == 1.0 and message == "done"
    pd.testing.assert_frame_equal(alone["sweep"], together["sweep"])
    pd.testing.assert_frame_equal(alone["agreement"], together["agreement"])
    assert together["agreement"]["agreement"].between(0, 1).all() and len(together["agreement"]) == 4 * 2 * 3


def test_dashboard_workers_do_not_run_the_app_again(monkeypatch, capfd):
    """Streamlit installs app.py as the __main__ module; a fork server's child imports __main__ again (as
    __mp_main__) before it works. app.py must then draw nothing and start nothing: once it started its own
    worker pool inside each worker, which failed with multiprocessing's bootstrapping error."""
    import sys
    import types
    from pathlib import Path

    app = types.ModuleType("__main__")
    app.__dict__["__file__"] = str(Path(__file__).resolve().parents[1] / "app.py")
    monkeypatch.setitem(sys.modules, "__main__", app)  # as Streamlit's script runner does
    monkeypatch.setenv(parallel_sources.WORKERS_ENV, "2")
    parallel_sources.stop_workers()
    try:
        assert _in_thread(parallel_sources.prestart_workers) == 2
    finally:
        parallel_sources.stop_workers()  # (the next pool starts under the real __main__)
    err = capfd.readouterr().err
    assert "bootstrapping" not in err and "ScriptRunContext" not in err and "No runtime" not in err, err[-2000:]


@pytest.mark.slow
def test_an_audit_in_workers_equals_one_process(zoo_model, monkeypatch):
    """The battery (A-GD, APGD, their BPDA variants on an input-quantized member, Square, a surrogate's transfer)
    attacked one per core gives the report of one process, number for number."""
    from conftest import FP_S1, Q1, TEST_ZOO_DIR

    from trend_core.experiments.audit import run_audit

    for name in (FP, Q1, Q2, HT, FP_S1):
        zoo_model(name)

    def audit(executor: str | None):
        if executor:
            monkeypatch.setenv("TREND_EXECUTOR", executor)
        else:
            monkeypatch.delenv("TREND_EXECUTOR", raising=False)
        store = RecordingStore()
        with cpu_threads(1):  # the one-process battery on one thread, as each worker attacks
            report = run_audit([FP, Q1, Q2], epsilons=[0.1], level="smoke", zoo=TEST_ZOO_DIR, limit=24, cache=store)
        return report, store.written

    monkeypatch.setenv(parallel_sources.WORKERS_ENV, "2")
    parallel_sources.stop_workers()
    alone, alone_written = audit("local")
    assert parallel_sources.worker_count() == 0
    together, together_written = audit(None)
    assert parallel_sources.worker_count() == 2  # the battery ran in workers
    assert any("BPDA" in a for a in together.robust["attack"])  # BPDA variants travelled to the workers too
    assert any(a.startswith("transfer from") for a in together.robust["attack"])
    pd.testing.assert_frame_equal(alone.robust, together.robust)
    pd.testing.assert_frame_equal(alone.worst_case, together.worst_case)
    assert alone_written.keys() == together_written.keys()  # every attack and score, under the same keys
    for key, value in alone_written.items():  # adversarial images and per-image outcomes, bit for bit
        other = together_written[key]
        pairs = [(v, other[k]) for k, v in value.items()] if isinstance(value, dict) else [(value, other)]
        assert all(torch.equal(a, b) for a, b in pairs), key


@pytest.mark.slow
def test_a_cancelled_audit_in_workers_stops_within_a_second_and_keeps_what_finished(zoo_model, monkeypatch):
    """A dashboard job that yields to a presenter's run, or is cancelled, passes ``cancel``: the battery in the
    workers stops within about a second (the units poll every half second), not after its slowest attack, and
    what finished before stays stored for the rerun."""
    import time

    from conftest import FP_S1, Q1, TEST_ZOO_DIR

    from trend_core.experiments.audit import run_audit
    from trend_core.experiments.transfer_keys import TransferCancelled

    for name in (FP, Q1, Q2, HT, FP_S1):
        zoo_model(name)
    monkeypatch.delenv("TREND_EXECUTOR", raising=False)
    monkeypatch.setenv(parallel_sources.WORKERS_ENV, "2")
    parallel_sources.stop_workers()
    store, reports = RecordingStore(), []

    def audit(cancel):
        return run_audit(
            [FP, Q1, Q2],
            epsilons=[0.1],
            level="quick",
            zoo=TEST_ZOO_DIR,
            limit=24,
            cache=store,
            progress=lambda f, m: reports.append(time.monotonic()),
            cancel=cancel,
        )

    asked: list[float] = []

    def cancel() -> bool:  # true from the first finished attack on
        if reports and not asked:
            asked.append(time.monotonic())
        return bool(asked)

    with pytest.raises(TransferCancelled, match="cancelled after"):
        audit(cancel)
    stopped = time.monotonic()
    assert parallel_sources.worker_count() == 2  # the battery ran in workers
    assert stopped - asked[0] < 3.0, stopped - asked[0]  # the quick battery's Square alone takes longer
    kept = dict(store.written)
    assert len(kept) >= 2  # the attack that finished first: its images and outcomes
    report = audit(None)  # the rerun attacks what is missing, and finishes
    assert set(report.robust["attack"]) >= {"A-GD", "Square"}
    assert all(store.written[key] is value for key, value in kept.items())  # nothing kept was attacked again
