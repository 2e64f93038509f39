"""The demo warm-up gives way to the presenter: its runs are background jobs, a presenter's run arriving mid-way
runs at once while the warm-up's current run yields and is done again afterwards, and a presenter's click on the
run the warm-up is computing joins it. The pages' runs are stood in for by tiny loops submitted the way every
service submits (``service.submit.submit_job``), on a real job manager and its threads."""

from __future__ import annotations

import threading
import time

import pytest

from trend_core.models.zoo import Zoo
from trend_core.runtime.jobs import Job, JobManager, JobStatus
from trend_core.service import warmup
from trend_core.service.submit import submit_job

WAIT = 20.0


class FakeRuns:
    """Three pages' default runs: "A", "B" and "C" loops that report progress every 10 ms. B's first try loops
    for 10 s unless ``b_release`` is set (long enough to be interrupted; ``b_started`` tells when it runs), and
    reports once more as it ends; the other tries are short."""

    def __init__(self):
        self.tries: dict[str, int] = {}
        self.b_started, self.b_release = threading.Event(), threading.Event()
        self.log: list[str] = []  # "<page> <try>" as each try starts

    def submit(self, page: str):
        def submit_page(zoo: Zoo, store, manager: JobManager | None = None) -> Job:
            return submit_job(
                zoo,
                [page],
                self.loop(page),
                title=f"page {page}",
                kind="fake-page",
                device="cpu",
                store=store,
                command=f"trend fake {page}",
                manager=manager,
                models=[],
            )

        return submit_page

    def loop(self, page: str):
        def run(job: Job) -> str:
            self.tries[page] = self.tries.get(page, 0) + 1
            self.log.append(f"{page} {self.tries[page]}")
            steps = 1000 if page == "B" and self.tries[page] == 1 else 3
            if page == "B":
                self.b_started.set()
            for step in range(steps):
                job.progress(step / steps, f"step {step}")
                if page == "B" and self.b_release.wait(0.01):
                    break
                time.sleep(0.01)
            job.progress(0.99, "finishing")  # (a job asked to yield stops here at the latest)
            return page

        return run

    def runs(self, *args, **kwargs) -> list[warmup.DefaultRun]:
        return [warmup.DefaultRun(page, self.submit(page)) for page in "ABC"]


@pytest.fixture
def fake_runs(monkeypatch) -> FakeRuns:
    runs = FakeRuns()
    # seam: the pages' default runs need a trained zoo; tiny loops through the same submit path stand in for them
    monkeypatch.setattr(warmup, "default_runs", runs.runs)
    return runs


def start_warmup(tmp_path, manager: JobManager, messages: list[str]) -> tuple[threading.Thread, list]:
    """``warm_defaults`` in a thread (as its light job runs it), recording its progress messages."""
    result: list = []

    def warm() -> None:
        result.extend(
            warmup.warm_defaults(
                Zoo(tmp_path), None, "digits", device="cpu", manager=manager, progress=lambda f, m: messages.append(m)
            )
        )

    thread = threading.Thread(target=warm, daemon=True)
    thread.start()
    return thread, result


def wait_until(condition, timeout: float = WAIT) -> bool:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_warm_up_yields_to_a_presenters_run_and_redoes_the_run_it_gave_up(tmp_path, fake_runs):
    manager, messages, release = JobManager(sync=False), [], threading.Event()
    thread, jobs = start_warmup(tmp_path, manager, messages)
    assert fake_runs.b_started.wait(WAIT)
    b_first = next(j for j in manager.jobs(kind="fake-page") if j.title == "page B")
    assert b_first.background

    def presenters_run(job: Job) -> str:  # runs until the test has seen the warm-up wait for it
        fake_runs.log.append("presenter")
        while not release.wait(0.005):
            job.progress(0.5, "the presenter's settings")
        return "presenter"

    clicked = submit_job(
        Zoo(tmp_path),
        ["other settings"],
        presenters_run,
        title="presenter",
        kind="fake-page",
        device="cpu",
        store=None,
        command="trend fake",
        manager=manager,
        models=[],
    )
    assert not clicked.background
    assert wait_until(lambda: b_first.finished)  # at its next progress report, not after its 10 s loop
    assert b_first.status is JobStatus.CANCELLED and b_first.yielded
    assert wait_until(lambda: any(warmup.PAUSED in m for m in messages[-3:]))  # it says it waits for the presenter
    assert fake_runs.tries["B"] == 1  # ... and does not start B again meanwhile
    release.set()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert clicked.status is JobStatus.DONE
    assert [j.title for j in jobs] == ["page A", "page B", "page C"]
    assert all(j.status is JobStatus.DONE and j.background for j in jobs)
    assert jobs[1] is not b_first and fake_runs.tries == {"A": 1, "B": 2, "C": 1}
    assert fake_runs.log == ["A 1", "B 1", "presenter", "B 2", "C 1"]


def test_a_presenters_click_on_the_run_the_warm_up_computes_joins_it(tmp_path, fake_runs):
    manager, messages = JobManager(sync=False), []
    thread, jobs = start_warmup(tmp_path, manager, messages)
    assert fake_runs.b_started.wait(WAIT)
    running = next(j for j in manager.jobs(kind="fake-page") if j.title == "page B")
    assert running.background
    clicked = fake_runs.submit("B")(Zoo(tmp_path), None, manager=manager)  # the page's default run, as it asks
    assert clicked is running and not clicked.background
    fake_runs.b_release.set()  # B ends, with one more progress report after the click: it was not interrupted
    thread.join(WAIT)
    assert not thread.is_alive()
    assert [j.status for j in jobs] == [JobStatus.DONE] * 3 and jobs[1] is clicked and not clicked.yielded
    assert fake_runs.tries == {"A": 1, "B": 1, "C": 1}
