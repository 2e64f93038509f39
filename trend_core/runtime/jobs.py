"""Background jobs: long work (training, attacks, sweeps) runs in server threads, not in a page script.

One process-wide :class:`JobManager` (``get_manager()``) holds every job by its content key, so two browser
sessions asking for the same work share one job, and a page finds its job again after a page switch or a
browser reload. Heavy jobs (training, attacks) go through one worker thread per device
(``trend_core.runtime.device_worker``), so a GPU (or the CPU) runs one heavy job at a time and the rest wait in
its queue; light jobs start at once in their own thread.

Priorities: a heavy job is foreground (the default: what a page or the CLI asks for) or background (the demo
warm-up's runs, ``submit(background=True)``). A device runs its queued foreground jobs before its background
ones, first in, first out within each class. A foreground job submitted while a background job runs on its device
preempts it: the background job is asked to yield, stops at its next ``job.progress`` report and ends as
CANCELLED with ``yielded`` set (message "paused for your run"); whoever submitted it submits it again later
(the warm-up does, once the device has no foreground work). Submitting the key of a queued or running background
job as foreground promotes that job (it moves ahead of the background queue and is no longer preempted) instead
of starting a second one; a job already yielding is replaced by a fresh foreground try.

A job function takes the :class:`Job` and returns the result. It reports progress with ``job.progress(f, msg)``
(which raises :class:`JobCancelled` once a cancel was asked for) and may pass ``job.cancel_requested`` to
engine functions that poll a ``cancel=`` callback. A finished result is written to the result store under the
job's key, so a new session or a restarted server gets it back at once. Failures keep one sentence: a
TrendError's message, or for a bug a short note whose traceback goes to ``<home>/logs/jobs.log``.

Set ``TREND_JOBS_SYNC=1`` (tests, scripts) to run every job inline in the submitting thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Protocol

from trend_core.errors import TrendError
from trend_core.runtime.device_worker import DeviceWorker

log = logging.getLogger(__name__)

SYNC_ENV = "TREND_JOBS_SYNC"
MAX_FINISHED_JOBS = 256  # finished jobs kept in memory (results stay in the store regardless)
ETA_MIN_PROGRESS = 0.02  # progress made since the first report before an estimate of the time left is given
ETA_MIN_SECONDS = 1.0  # ... and seconds spent making it (a cached prefix alone says nothing about the rate)
YIELDED_MESSAGE = "paused for your run"  # the message of a background job that stopped for a foreground one


class JobCancelled(Exception):
    """Raised inside a job (by ``Job.progress``) when a cancel was requested; the job ends as cancelled."""


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class ResultStore(Protocol):
    """What jobs need of a store: get a value by key (None if absent) and set one."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> Any: ...


@dataclass(eq=False)
class Job:
    """One unit of background work and what is known about it; safe to read from any thread."""

    key: str
    title: str
    kind: str = "job"
    device: str | None = None  # heavy jobs name the device whose worker runs them; None: light
    status: JobStatus = JobStatus.QUEUED
    fraction: float = 0.0
    message: str = "waiting to start"
    result: Any = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished_at: float | None = None
    from_store: bool = False
    meta: dict = field(default_factory=dict)  # what the job was asked for (e.g. a transfer run's request)
    background: bool = False  # a heavy job that yields its device to foreground ones (the demo warm-up's)
    yielded: bool = False  # cancelled because a foreground job needed the device: to be submitted again later
    _rate_origin: tuple[float, float] | None = field(default=None, repr=False)  # (time, fraction) of 1st report
    _fn: Callable[[Job], Any] | None = field(default=None, repr=False)
    _store: ResultStore | None = field(default=None, repr=False)
    _log_dir: Path | None = field(default=None, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _stop: str | None = field(default=None, repr=False)  # why _cancel was set: "cancel" or "yield"
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _state: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- inside the job -------------------------------------------------------------------------------------
    def progress(self, fraction: float | None = None, message: str | None = None) -> None:
        """Report progress (fraction in [0, 1]); raises JobCancelled when a cancel was requested.

        The fraction never goes back (a later, smaller report keeps the bar where it was). The time-left
        estimate (``eta``) is measured from the last report before the fraction first moved, so loading models
        (reported at the starting fraction) does not count as slow progress.
        """
        if fraction is not None:
            self.fraction = max(self.fraction, min(1.0, max(0.0, float(fraction))))
            if self._rate_origin is None or self._rate_origin[1] == self.fraction:
                self._rate_origin = (time.time(), self.fraction)
        if message is not None:
            self.message = message
        self.check_cancelled()

    def cancel_requested(self) -> bool:
        """True once someone asked to cancel: pass as ``cancel=`` to engine loops that poll."""
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled(f"{self.title} was cancelled.")

    # -- outside the job ------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started

    @property
    def eta(self) -> float | None:
        """Estimated seconds left while running, from the rate of progress since the first report; None until
        enough progress was made to tell (ETA_MIN_PROGRESS over ETA_MIN_SECONDS)."""
        origin = self._rate_origin
        if self.status is not JobStatus.RUNNING or origin is None:
            return None
        spent, made = time.time() - origin[0], self.fraction - origin[1]
        if made < ETA_MIN_PROGRESS or spent < ETA_MIN_SECONDS:
            return None
        return spent * (1.0 - self.fraction) / made

    def timing(self) -> str:
        """Elapsed time and, once known, the time left, e.g. "1 min 5 s elapsed, about 40 s left"."""
        if self.status is JobStatus.QUEUED:
            return "waiting for the device"
        text = f"{format_seconds(self.elapsed)} elapsed"
        eta = self.eta
        if eta is not None:
            text += f", about {format_seconds(eta)} left"
        elif self.status is JobStatus.RUNNING:
            text += ", estimating the time left"
        return text

    def cancel(self) -> None:
        """Ask the job to stop: a queued job is dropped, a running one stops at its next progress report."""
        with self._state:
            self._stop = "cancel"
            self._cancel.set()
            if self.status is JobStatus.QUEUED:
                self._finish(JobStatus.CANCELLED, message="cancelled before it started")

    def request_yield(self) -> None:
        """Ask a running background job to give its device to a foreground one: it stops at its next progress
        report and ends as cancelled with ``yielded`` set (a cancel asked for by a user keeps precedence)."""
        with self._state:
            if self.finished or self._stop is not None:
                return
            self._stop = "yield"
            self._cancel.set()

    @property
    def yielding(self) -> bool:
        """True once asked to yield, until it has (then ``yielded``)."""
        return self._stop == "yield" and not self.finished

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (True) or the timeout passed (False)."""
        return self._done.wait(timeout)

    # -- run by the manager ---------------------------------------------------------------------------------
    def execute(self) -> None:
        """Run the job's function in this thread and record how it ended (called by the manager's threads)."""
        with self._state:
            if self.finished:
                return
            if self._cancel.is_set():
                self._stopped("cancelled before it started")
                return
            self.status, self.started, self.message = JobStatus.RUNNING, time.time(), "started"
        try:
            if self._fn is None:
                raise TrendError(f"{self.title} has nothing to run.")
            result = self._fn(self)
        except JobCancelled:
            self._stopped("cancelled")
        except TrendError as exc:
            self._finish(JobStatus.FAILED, error=str(exc))
        except Exception as exc:  # a bug, or an engine-specific cancellation
            if self._cancel.is_set():
                self._stopped("cancelled")
                return
            self._finish(JobStatus.FAILED, error=self._log_failure(exc))
        else:
            if self._store is not None:
                try:
                    self._store.set(self.key, result)
                except Exception as exc:  # the result is still usable in this process
                    log.warning("could not store the result of %s: %s", self.title, exc)
            self.result = result
            self._finish(JobStatus.DONE, message="done", fraction=1.0)

    def _stopped(self, message: str) -> None:
        """End as cancelled: by a user (``message``) or because a foreground job needed the device (yielded)."""
        self.yielded = self._stop == "yield"
        self._finish(JobStatus.CANCELLED, message=YIELDED_MESSAGE if self.yielded else message)

    def _finish(
        self, status: JobStatus, message: str | None = None, error: str | None = None, fraction: float | None = None
    ) -> None:
        self.error = error
        if message is not None:
            self.message = message
        if fraction is not None:
            self.fraction = fraction
        self.finished_at = time.time()
        self.status = status
        self._fn = None  # drop the closure (and the models it may hold)
        self._done.set()

    def _log_failure(self, exc: Exception) -> str:
        """Write the traceback to the job log; return one sentence for the user."""
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        where = ""
        if self._log_dir is not None:
            try:
                self._log_dir.mkdir(parents=True, exist_ok=True)
                path = self._log_dir / "jobs.log"
                with open(path, "a", encoding="utf-8") as handle:
                    handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} job {self.key} ({self.title})\n")
                    handle.write("".join(traceback.format_exception(exc)))
                where = f"; the traceback is in {path}"
            except OSError:
                pass
        log.error("job %s (%s) failed", self.key, self.title, exc_info=exc)
        return f"{self.title} failed unexpectedly ({what}){where}."


def format_seconds(seconds: float) -> str:
    """A duration for people: "8 s", "3 min 20 s", "1 h 5 min"."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class JobManager:
    """Holds jobs by content key; runs heavy ones through per-device workers and light ones in threads."""

    def __init__(self, sync: bool | None = None):
        self._sync = sync
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._workers: dict[str, DeviceWorker] = {}

    @property
    def sync(self) -> bool:
        if self._sync is not None:
            return self._sync
        return os.environ.get(SYNC_ENV, "").strip().lower() in ("1", "true", "yes")

    def submit(
        self,
        key: str,
        fn: Callable[[Job], Any],
        *,
        title: str,
        kind: str = "job",
        device: str | None = None,
        store: ResultStore | None = None,
        log_dir: str | os.PathLike | None = None,
        meta: dict | None = None,
        background: bool = False,
    ) -> Job:
        """The job for ``key``: the live or finished one if known, one rebuilt from ``store`` if the result
        is there, else a new job running ``fn(job)``. A failed or cancelled job is replaced by a fresh try, and
        so is a done one whose result has since left ``store``.

        ``device`` (e.g. "cpu", "cuda:0") marks a heavy job, run by that device's single worker; ``meta``
        records what was asked (kept on the job for pages that find it again). ``background`` marks a heavy job
        that waits for foreground ones and yields to them (the module docstring says how); a foreground submit
        of a background job's key makes it foreground, and one of a job that is yielding starts a fresh try.
        """
        with self._lock:
            job = self._jobs.get(key)
            stored = _lookup(store, key)
            if job is not None and job.status not in (JobStatus.FAILED, JobStatus.CANCELLED) and not job.yielding:
                stale = job.status is JobStatus.DONE and store is not None and stored is None
                if not stale:  # (a done job whose stored result was deleted, e.g. a model, runs again)
                    if not background:
                        self._promote(job)
                    return job
            if stored is not None:
                job = Job(
                    key,
                    title,
                    kind,
                    device,
                    status=JobStatus.DONE,
                    fraction=1.0,
                    message="done",
                    result=stored,
                    from_store=True,
                    meta=dict(meta or {}),
                )
                job.started = job.finished_at = job.created
                job._done.set()
                self._remember(job)
                return job
            job = Job(
                key,
                title,
                kind,
                device,
                _fn=fn,
                _store=store,
                meta=dict(meta or {}),
                _log_dir=Path(log_dir) if log_dir is not None else None,
                background=background,
            )
            self._remember(job)
            if not self.sync:
                if device is None:
                    threading.Thread(target=job.execute, name=f"trend-job-{key[:12]}", daemon=True).start()
                else:
                    self._worker(device).put(job)
        if self.sync:
            job.execute()
        return job

    def get(self, key: str, store: ResultStore | None = None) -> Job | None:
        """The job known under ``key`` (or a finished one rebuilt from ``store``), else None."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                return job
        stored = _lookup(store, key)
        if stored is None:
            return None
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                job = Job(key, key, status=JobStatus.DONE, fraction=1.0, message="done", result=stored, from_store=True)
                job._done.set()
                self._remember(job)
            return job

    def jobs(self, kind: str | None = None, active_only: bool = False) -> list[Job]:
        """Known jobs, newest first, optionally of one kind and only the queued or running ones."""
        with self._lock:
            found = [
                j for j in self._jobs.values() if (kind is None or j.kind == kind) and not (active_only and j.finished)
            ]
        return sorted(found, key=lambda j: j.created, reverse=True)

    def cancel(self, key: str) -> bool:
        job = self._jobs.get(key)
        if job is None or job.finished:
            return False
        job.cancel()
        return True

    def foreground_active(self, device: str | None) -> bool:
        """Whether a foreground heavy job is running or waiting on ``device``."""
        worker = self._existing_worker(device)
        return worker is not None and worker.foreground_active()

    def wait_foreground_idle(self, device: str | None, timeout: float | None = None) -> bool:
        """Block until ``device`` has no foreground heavy job running or waiting (True), or ``timeout`` passed."""
        worker = self._existing_worker(device)
        return worker is None or worker.wait_foreground_idle(timeout)

    # -- internals ------------------------------------------------------------------------------------------
    def wait_idle(self) -> None:
        """Block until every queued heavy job has run or been skipped (cancelled while waiting)."""
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.join()

    def _worker(self, device: str) -> DeviceWorker:
        worker = self._workers.get(device)
        if worker is None:
            worker = self._workers[device] = DeviceWorker(device)
        return worker

    def _existing_worker(self, device: str | None) -> DeviceWorker | None:
        """The worker of ``device`` if one was started (None for a light job's None device)."""
        with self._lock:
            return self._workers.get(device) if device is not None else None

    def _promote(self, job: Job) -> None:
        """Make an unfinished background ``job`` foreground (a page asked for exactly it)."""
        worker = self._existing_worker(job.device)
        if worker is not None:
            worker.promote(job)
        else:
            job.background = False

    def _remember(self, job: Job) -> None:
        self._jobs[job.key] = job
        finished = [j for j in self._jobs.values() if j.finished]
        if len(finished) > MAX_FINISHED_JOBS:
            for old in sorted(finished, key=lambda j: j.finished_at or 0)[: len(finished) - MAX_FINISHED_JOBS]:
                del self._jobs[old.key]


def _lookup(store: ResultStore | None, key: str) -> Any:
    if store is None:
        return None
    try:
        return store.get(key)
    except Exception as exc:  # a damaged cache entry means: compute again
        log.warning("could not read %s from the store: %s", key, exc)
        return None


_MANAGER: JobManager | None = None
_MANAGER_LOCK = threading.Lock()


def get_manager() -> JobManager:
    """The process-wide job manager shared by every browser session."""
    global _MANAGER
    with _MANAGER_LOCK:
        if _MANAGER is None:
            _MANAGER = JobManager()
        return _MANAGER


def reset_manager() -> None:
    """Forget every job held in memory, as a restarted server would (finished results stay in their stores)."""
    global _MANAGER
    with _MANAGER_LOCK:
        _MANAGER = None


def device_lane(device: Any) -> str:
    """The worker name for a resolved torch device: 'cuda:0' for any first GPU, 'cpu' for the CPU."""
    text = str(device)
    if text == "cuda":
        return "cuda:0"
    return text
