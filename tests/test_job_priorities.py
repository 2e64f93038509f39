"""Foreground jobs (a page's) before background ones (the demo warm-up's): a device takes queued foreground jobs
first, a running background job yields to a new foreground one, a foreground submit of a background job's key
promotes it, and the warm-up still finishes every run, redoing the one it gave up."""

from __future__ import annotations

import threading
import time

from trend_core.runtime.jobs import YIELDED_MESSAGE, Job, JobManager, JobStatus

LONG_LOOP = 1000  # steps of 10 ms: a background job that would run 10 s unless it yields
WAIT = 10.0  # generous timeout for a job that should end within milliseconds


def recorder(order: list, name: str, gate: threading.Event | None = None):
    """A job function that waits for ``gate`` (reporting progress), records ``name`` and returns it."""

    def run(job: Job) -> str:
        while gate is not None and not gate.wait(0.005):
            job.progress(0.1, "waiting for the gate")
        order.append(name)
        return name

    return run


def looping(started: threading.Event, steps: int = LONG_LOOP):
    """A job function that reports progress every 10 ms for ``steps`` steps (sets ``started`` first)."""

    def run(job: Job) -> str:
        started.set()
        for step in range(steps):
            job.progress(step / steps, f"step {step}")
            time.sleep(0.01)
        return "looped"

    return run


def finished(*jobs: Job) -> None:
    for job in jobs:
        assert job.wait(WAIT), f"{job.title} did not finish"


def test_foreground_jobs_overtake_queued_background_ones():
    manager, order, gate = JobManager(sync=False), [], threading.Event()
    blocker = manager.submit("blocker", recorder(order, "blocker", gate), title="blocker", device="cpu")
    queued = [
        manager.submit("bg1", recorder(order, "bg1"), title="bg1", device="cpu", background=True),
        manager.submit("fg1", recorder(order, "fg1"), title="fg1", device="cpu"),
        manager.submit("bg2", recorder(order, "bg2"), title="bg2", device="cpu", background=True),
        manager.submit("fg2", recorder(order, "fg2"), title="fg2", device="cpu"),
    ]
    assert manager.foreground_active("cpu") and not manager.foreground_active("cuda:0")
    gate.set()
    finished(blocker, *queued)
    manager.wait_idle()
    assert order == ["blocker", "fg1", "fg2", "bg1", "bg2"]  # FIFO within each class
    assert all(j.status is JobStatus.DONE for j in queued) and not manager.foreground_active("cpu")


def test_a_running_background_job_yields_to_a_foreground_one_which_starts_at_once():
    manager, started = JobManager(sync=False), threading.Event()
    background = manager.submit("warm", looping(started), title="warm-up run", device="cpu", background=True)
    assert started.wait(WAIT)
    asked = time.time()
    foreground = manager.submit("click", lambda job: job.progress(0.5) or "clicked", title="click", device="cpu")
    finished(foreground)  # long before the background loop's 10 s
    assert foreground.status is JobStatus.DONE and foreground.started is not None
    assert foreground.started - asked < LONG_LOOP * 0.01 / 4
    assert background.status is JobStatus.CANCELLED and background.yielded
    assert background.message == YIELDED_MESSAGE and background.error is None
    assert background.finished_at is not None and background.finished_at <= foreground.started  # one at a time
    again = manager.submit("warm", looping(started, 2), title="warm-up run", device="cpu", background=True)
    assert again is not background  # a yielded job is tried afresh
    finished(again)
    assert again.status is JobStatus.DONE and not again.yielded


def test_a_user_cancel_of_a_background_job_is_not_a_yield():
    manager, started = JobManager(sync=False), threading.Event()
    background = manager.submit("warm", looping(started), title="warm-up run", device="cpu", background=True)
    assert started.wait(WAIT)
    background.cancel()
    finished(background)
    assert background.status is JobStatus.CANCELLED and not background.yielded and background.message == "cancelled"


def test_foreground_submit_of_a_running_background_key_promotes_it_instead_of_preempting():
    manager, started, release = JobManager(sync=False), threading.Event(), threading.Event()
    calls = []

    def run(job: Job) -> str:
        calls.append(1)
        started.set()
        while not release.wait(0.005):
            job.progress(0.5, "running")
        job.progress(0.9, "a report after the promotion and the next click: a preempted job would stop here")
        return "default run"

    background = manager.submit("default", run, title="default run", device="cpu", background=True)
    assert started.wait(WAIT)
    clicked = manager.submit("default", run, title="default run", device="cpu")  # the presenter's same run
    assert clicked is background and not clicked.background
    other = manager.submit("other", lambda job: "other", title="other", device="cpu")
    release.set()
    finished(background, other)
    assert background.status is JobStatus.DONE and not background.yielded and calls == [1]
    assert other.status is JobStatus.DONE and other.started >= background.finished_at


def test_foreground_submit_of_a_queued_background_key_moves_it_ahead():
    manager, order, gate = JobManager(sync=False), [], threading.Event()
    blocker = manager.submit("blocker", recorder(order, "blocker", gate), title="blocker", device="cpu")
    first = manager.submit("bg1", recorder(order, "bg1"), title="bg1", device="cpu", background=True)
    second = manager.submit("bg2", recorder(order, "bg2"), title="bg2", device="cpu", background=True)
    assert manager.submit("bg2", recorder(order, "dup"), title="bg2", device="cpu") is second
    assert manager.submit("bg1", recorder(order, "dup"), title="bg1", device="cpu", background=True) is first
    assert first.background and not second.background  # a background submit never demotes or promotes
    gate.set()
    finished(blocker, first, second)
    assert order == ["blocker", "bg2", "bg1"]


def test_foreground_submit_of_a_yielding_key_starts_a_fresh_foreground_try():
    manager, started, gate = JobManager(sync=False), threading.Event(), threading.Event()
    order: list[str] = []
    background = manager.submit("default", looping(started), title="default", device="cpu", background=True)
    assert started.wait(WAIT)
    click = manager.submit("click", recorder(order, "click", gate), title="click", device="cpu")
    again = manager.submit("default", recorder(order, "default"), title="default", device="cpu")
    assert again is not background and not again.background
    gate.set()
    finished(background, click, again)
    assert background.yielded and order == ["click", "default"] and again.status is JobStatus.DONE


def test_cancelled_queued_background_job_never_runs_and_sync_mode_runs_inline():
    manager, gate, ran = JobManager(sync=False), threading.Event(), []
    blocker = manager.submit("b", lambda job: gate.wait(5), title="blocker", device="cpu")
    queued = manager.submit("q", lambda job: ran.append(1), title="queued", device="cpu", background=True)
    queued.cancel()
    assert queued.status is JobStatus.CANCELLED and not queued.yielded
    gate.set()
    finished(blocker)
    manager.wait_idle()
    assert ran == []
    inline = JobManager(sync=True).submit("s", lambda job: "now", title="inline", device="cpu", background=True)
    assert inline.status is JobStatus.DONE and inline.result == "now"
