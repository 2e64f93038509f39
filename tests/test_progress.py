"""Honest progress: every job's bar only moves forward, in proportion to the work done, reaches 1.0, and has an
elapsed time and, once the rate is known, an estimate of the time left."""

from __future__ import annotations

import time

import pytest
from conftest import FP, Q1

from trend_core.runtime.jobs import Job, JobManager, JobStatus, format_seconds
from trend_core.runtime.progress import WorkMeter


@pytest.fixture
def reports(monkeypatch) -> list[tuple[float | None, str | None]]:
    """Every raw ``Job.progress(fraction, message)`` call of the test, in order."""
    calls: list[tuple[float | None, str | None]] = []
    original = Job.progress

    def record(self, fraction=None, message=None):
        calls.append((fraction, message))
        return original(self, fraction, message)

    monkeypatch.setattr(Job, "progress", record)
    return calls


def _fractions(calls) -> list[float]:
    return [f for f, _ in calls if f is not None]


def _assert_honest(job: Job, calls) -> None:
    assert job.status is JobStatus.DONE, job.error
    fractions = _fractions(calls)
    assert fractions == sorted(fractions), fractions  # never backwards
    assert job.fraction == 1.0


def test_work_meter_reports_in_proportion():
    seen = []
    meter = WorkMeter(lambda f, m: seen.append((f, m)), total=10)
    meter.start("a")
    meter.done(2, "b")
    part = meter.part(4)
    part(0.5, "half of c")
    meter.done(4)
    meter.done(4, "end")
    assert seen == [(0.0, "a"), (0.2, "b"), (0.4, "half of c"), (0.6, None), (1.0, "end")]


def test_format_seconds():
    assert [format_seconds(s) for s in (0.4, 8, 59.6, 61, 200, 3600, 3725)] == [
        "0 s",
        "8 s",
        "1 min",
        "1 min 1 s",
        "3 min 20 s",
        "1 h",
        "1 h 2 min",
    ]


def test_eta_comes_from_the_rate_since_the_first_move_and_the_bar_never_goes_back(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    job = Job("k", "A job")
    job.status, job.started = JobStatus.RUNNING, clock[0]
    job.progress(0.0, "loading models")
    clock[0] += 30  # loading is slow and says nothing about the rate
    job.progress(0.0, "attacking")
    assert job.eta is None and job.timing() == "30 s elapsed, estimating the time left"
    clock[0] += 10
    job.progress(0.25, "a quarter")
    assert job.eta == pytest.approx(30.0)  # 10 s per quarter, three quarters left
    assert job.timing() == "40 s elapsed, about 30 s left"
    job.progress(0.1, "a smaller report")
    assert job.fraction == 0.25
    job.status = JobStatus.QUEUED
    assert job.timing() == "waiting for the device"


def test_training_progress_counts_epochs(tmp_path, reports):
    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo
    from trend_core.service.training import submit_training

    specs = [
        ModelSpec.parse("digits/smallcnn-w0.25/FP/sgd/s0/e1"),
        ModelSpec.parse("digits/smallcnn-w0.25/Q2/sgd/s0/e3"),
    ]
    job = submit_training(Zoo(tmp_path), specs, "cpu", manager=JobManager(sync=True))
    _assert_honest(job, reports)
    at_epoch = [(m.split(", validation")[0], f) for f, m in reports if m and ": epoch " in m]
    # four epochs in all: the 1-epoch model is a quarter of the work, not half; the two models train side by
    # side, so their reports interleave, but the bar counts epochs in the order they finish
    assert [f for _, f in at_epoch] == [pytest.approx(0.25), pytest.approx(0.5), pytest.approx(0.75), 1.0]
    assert sorted(m.split("; ")[1] for m, _ in at_epoch) == [
        "FP-SMALLCNN-s0: epoch 1/1",
        "Q2-SMALLCNN-s0: epoch 1/3",
        "Q2-SMALLCNN-s0: epoch 2/3",
        "Q2-SMALLCNN-s0: epoch 3/3",
    ]
    # the count of finished models only grows (models training side by side used to show 2/12, 11/12, 10/12)
    counts = [int(m.split("/")[0]) for _, m in reports if m and " models trained" in m]
    assert counts == sorted(counts) and counts[-1] == 2, counts
    assert reports[-1][1].startswith("2/2 models trained")


def test_ensemble_sweep_progress_is_proportional_to_rules_and_eps(linked_zoo_home, reports, monkeypatch):
    from trend_core.models.zoo import Zoo

    monkeypatch.setenv("TREND_EXECUTOR", "local")  # the in-process loop (workers report finished attacks instead)
    from trend_core.service.vote_jobs import submit_ensemble_sweep
    from trend_core.storage.store import get_store

    zoo = Zoo(linked_zoo_home)
    job = submit_ensemble_sweep(
        zoo,
        get_store(linked_zoo_home),
        [FP, Q1],
        [0.05, 0.1],
        steps=2,
        limit=8,
        agreement_images=8,
        device="cpu",
        manager=JobManager(sync=True),
    )
    _assert_honest(job, reports)
    starts = [f for f, m in reports if m and m.endswith("attacking the ensemble")]
    # 4 rules x 2 eps, each an attack on 8 images and an agreement trace on 8: 1/8 of the work apiece
    assert starts == pytest.approx([i / 8 for i in range(8)])


def test_tm_fit_progress_moves_per_eps_point(linked_zoo_home, reports):
    from trend_core.models.zoo import Zoo
    from trend_core.service.curve import submit_tm_fit
    from trend_core.storage.store import get_store

    zoo = Zoo(linked_zoo_home)
    job = submit_tm_fit(
        zoo,
        get_store(linked_zoo_home),
        FP,
        Q1,
        [0.05, 0.1, 0.2],
        [0.15],
        steps=2,
        limit=16,
        device="cpu",
        manager=JobManager(sync=True),
    )
    _assert_honest(job, reports)
    points = [(f, m) for f, m in reports if m and m.startswith("measuring TM at eps")]
    assert [m.split(" (")[0] for _, m in points] == [f"measuring TM at eps {e:g}" for e in (0.05, 0.1, 0.15, 0.2)]
    assert [f for f, _ in points] == pytest.approx([i / 4.05 for i in range(4)])
    assert any(m and m.startswith("fitting") for _, m in reports)


def test_trend_evaluation_weighs_the_ensemble_attack_by_its_members(linked_zoo_home, reports, monkeypatch):
    from trend_core.models.zoo import Zoo

    monkeypatch.setenv("TREND_EXECUTOR", "local")  # the in-process loop's weights (workers report finished units)
    from trend_core.service.vote_jobs import submit_trend_evaluation
    from trend_core.storage.store import get_store

    job = submit_trend_evaluation(
        Zoo(linked_zoo_home),
        get_store(linked_zoo_home),
        [FP, Q1],
        0.1,
        steps=2,
        limit=8,
        device="cpu",
        manager=JobManager(sync=True),
    )
    _assert_honest(job, reports)
    starts = [f for f, m in reports if m and m.startswith("A-GD: attacking")]
    assert starts == pytest.approx([0.0, 0.5, 0.75])  # the ensemble (2 gradients a step), then each member (1)
