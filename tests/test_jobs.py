"""The job manager without Streamlit: dedup by key, one heavy job per device, cancel, failures, stored results."""

from __future__ import annotations

import threading

import pytest

from trend_core.errors import TrendError
from trend_core.runtime.jobs import Job, JobManager, JobStatus
from trend_core.service.training import submit_training, training_key


class DictStore(dict):
    """The store protocol (get/set) over a dict, counting writes."""

    writes = 0

    def set(self, key, value):
        self.writes += 1
        self[key] = value


def wait_all(*jobs, timeout=10.0):
    for job in jobs:
        assert job.wait(timeout), f"{job.title} did not finish"


def test_same_key_gives_the_same_job_and_runs_once():
    manager, calls, gate = JobManager(sync=False), [], threading.Event()

    def work(job):
        calls.append(1)
        gate.wait(5)
        return 42

    first = manager.submit("k1", work, title="Work")
    second = manager.submit("k1", work, title="Work again")
    assert first is second
    gate.set()
    wait_all(first)
    assert first.status is JobStatus.DONE and first.result == 42 and calls == [1]
    assert manager.submit("k1", work, title="Work") is first  # a finished job is reused, not rerun
    assert calls == [1]


def test_heavy_jobs_on_one_device_run_one_at_a_time_in_order():
    manager, order, running, peak, lock = JobManager(sync=False), [], [0], [0], threading.Lock()
    gate = threading.Event()

    def work(name):
        def run(job):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            gate.wait(5)
            order.append(name)
            with lock:
                running[0] -= 1
            return name

        return run

    jobs = [manager.submit(f"h{i}", work(i), title=f"heavy {i}", device="cpu") for i in range(3)]
    assert jobs[0].wait(0.2) is False
    assert [j.status for j in jobs[1:]] == [JobStatus.QUEUED, JobStatus.QUEUED]
    gate.set()
    wait_all(*jobs)
    assert order == [0, 1, 2] and peak[0] == 1


def test_light_jobs_run_beside_heavy_ones():
    manager, gate = JobManager(sync=False), threading.Event()
    heavy = manager.submit("heavy", lambda job: gate.wait(5), title="heavy", device="cpu")
    light = manager.submit("light", lambda job: "quick", title="light")
    wait_all(light)
    assert light.result == "quick" and not heavy.finished
    gate.set()
    wait_all(heavy)


def test_cancel_running_job_stops_at_next_progress_report():
    manager, started, asked = JobManager(sync=False), threading.Event(), threading.Event()

    def loop(job):
        job.progress(0.1, "running")
        started.set()
        assert asked.wait(10)  # the test has asked for the cancel: the next report must stop the job
        job.progress(0.5, "one more step")
        return "finished"

    job = manager.submit("c1", loop, title="Long loop", device="cpu")
    assert started.wait(10)
    assert manager.cancel("c1")
    asked.set()
    wait_all(job)
    assert job.status is JobStatus.CANCELLED and job.result is None and job.fraction < 1


def test_cancel_queued_job_never_runs_it():
    manager, gate, ran = JobManager(sync=False), threading.Event(), []
    blocker = manager.submit("b", lambda job: gate.wait(5), title="blocker", device="cpu")
    queued = manager.submit("q", lambda job: ran.append(1), title="queued", device="cpu")
    queued.cancel()
    assert queued.status is JobStatus.CANCELLED
    gate.set()
    wait_all(blocker)
    manager.wait_idle()
    assert ran == []


def test_trend_error_becomes_its_sentence_and_a_resubmit_retries():
    manager, attempts = JobManager(sync=True), []

    def flaky(job):
        attempts.append(1)
        if len(attempts) == 1:
            raise TrendError("Eps must be positive, got 0.")
        return "ok"

    job = manager.submit("f", flaky, title="Flaky")
    assert job.status is JobStatus.FAILED and job.error == "Eps must be positive, got 0."
    retry = manager.submit("f", flaky, title="Flaky")
    assert retry is not job and retry.status is JobStatus.DONE and retry.result == "ok"


def test_unexpected_error_is_one_sentence_with_traceback_in_the_log(tmp_path):
    manager = JobManager(sync=True)

    def broken(job):
        return {}["missing"]

    job = manager.submit("x", broken, title="Broken job", log_dir=tmp_path / "logs")
    assert job.status is JobStatus.FAILED
    assert job.error.startswith("Broken job failed unexpectedly (KeyError: 'missing')")
    assert job.error.count("\n") == 0 and job.error.endswith(".")
    log_text = (tmp_path / "logs" / "jobs.log").read_text()
    assert "Traceback" in log_text and "broken" in log_text


def test_result_is_written_to_the_store_and_comes_back_at_once():
    store, calls = DictStore(), []
    first = JobManager(sync=True).submit("r", lambda job: calls.append(1) or {"tm": 0.5}, title="R", store=store)
    assert first.result == {"tm": 0.5} and store["r"] == {"tm": 0.5} and store.writes == 1
    fresh = JobManager(sync=False)  # a restarted server: nothing in memory, the store remembers
    again = fresh.submit("r", lambda job: calls.append(1), title="R", store=store)
    assert again.status is JobStatus.DONE and again.from_store and again.result == {"tm": 0.5}
    assert calls == [1]
    assert fresh.get("r") is again and JobManager().get("r", store=store).result == {"tm": 0.5}


def test_jobs_listing_by_kind_and_activity():
    manager, gate = JobManager(sync=False), threading.Event()
    running = manager.submit("a", lambda job: gate.wait(5), title="A", kind="transfer")
    done = manager.submit("b", lambda job: 1, title="B", kind="transfer")
    wait_all(done)
    assert [j.key for j in manager.jobs(kind="transfer", active_only=True)] == ["a"]
    assert {j.key for j in manager.jobs(kind="transfer")} == {"a", "b"} and manager.jobs(kind="train") == []
    gate.set()
    wait_all(running)


def test_training_job_reports_epochs_and_is_done_from_the_zoo(trend_home):
    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo

    zoo, spec = Zoo(trend_home), ModelSpec.parse("digits/resnet18-w0.25/FP/sgd/s0/e1")
    manager = JobManager(sync=True)
    job = submit_training(zoo, [spec], device="cpu", manager=manager)
    assert job.status is JobStatus.DONE, job.error
    assert zoo.has(spec) and job.result[0]["name"] == spec.name
    again = submit_training(zoo, [spec], device="cpu", manager=JobManager(sync=False))
    assert again.from_store and again.status is JobStatus.DONE
    assert job.key == training_key(zoo, [spec]) != training_key(Zoo(trend_home / "other"), [spec])
    with pytest.raises(TrendError):
        submit_training(zoo, [], manager=manager)


def test_cancelled_training_saves_nothing(trend_home, monkeypatch):
    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo

    zoo, spec = Zoo(trend_home), ModelSpec.parse("digits/resnet18-w0.25/Q2/sgd/s0/e50")
    manager, reported = JobManager(sync=False), threading.Event()
    original = Job.progress

    def progress(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if "epoch" in str(self.message):
            self.cancel()  # cancelled right after the first epoch report: training is mid-way, by construction
            reported.set()

    monkeypatch.setattr(Job, "progress", progress)
    job = submit_training(zoo, [spec], device="cpu", manager=manager)
    assert reported.wait(120)
    wait_all(job, timeout=30)
    assert job.status is JobStatus.CANCELLED and not zoo.has(spec)


def test_done_job_whose_stored_result_was_deleted_runs_again():
    store, calls = DictStore(), []
    manager = JobManager(sync=True)
    first = manager.submit("d", lambda job: calls.append(1) or len(calls), title="D", store=store)
    assert manager.submit("d", lambda job: calls.append(1) or len(calls), title="D", store=store) is first
    store.clear()  # e.g. the trained model was deleted from the zoo
    again = manager.submit("d", lambda job: calls.append(1) or len(calls), title="D", store=store)
    assert again is not first and again.result == 2 and calls == [1, 1]
