"""One device's heavy-job worker: a thread that runs its queued jobs one at a time, foreground jobs (a page's or
the CLI's) before background ones (the demo warm-up's), first in, first out within each class; a foreground job
arriving while a background one runs asks that one to yield, so a presenter's click never waits for the warm-up."""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol


class QueuedJob(Protocol):
    """What the worker needs of a job (``trend_core.runtime.jobs.Job``)."""

    background: bool

    @property
    def finished(self) -> bool: ...

    def request_yield(self) -> None: ...

    def execute(self) -> None: ...


class DeviceWorker:
    """The queue and thread of one device (e.g. "cpu", "cuda:0"); every method is safe from any thread."""

    def __init__(self, device: str):
        self.device = device
        self._changed = threading.Condition()
        self._foreground: deque[QueuedJob] = deque()
        self._background: deque[QueuedJob] = deque()
        self._current: QueuedJob | None = None
        self._unfinished = 0  # queued or running jobs, for join()
        self.thread = threading.Thread(target=self._loop, name=f"trend-jobs-{device}", daemon=True)
        self.thread.start()

    def put(self, job: QueuedJob) -> None:
        """Queue ``job`` behind the others of its class; a foreground one makes a running background job yield."""
        with self._changed:
            (self._background if job.background else self._foreground).append(job)
            self._unfinished += 1
            if not job.background:
                self._preempt()
            self._changed.notify_all()

    def promote(self, job: QueuedJob) -> None:
        """Make a queued or running background ``job`` foreground: it moves behind the queued foreground jobs
        (ahead of every background one) and is no longer asked to yield."""
        with self._changed:
            if not job.background:
                return
            job.background = False
            if job in self._background:
                self._background.remove(job)
                self._foreground.append(job)
                self._preempt()
            self._changed.notify_all()

    def foreground_active(self) -> bool:
        """Whether a foreground job is running or waiting here."""
        with self._changed:
            return self._foreground_active()

    def wait_foreground_idle(self, timeout: float | None = None) -> bool:
        """Block until no foreground job is running or waiting (True) or ``timeout`` passed (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._foreground_active(), timeout)

    def join(self) -> None:
        """Block until every queued job has run or been skipped (cancelled while waiting)."""
        with self._changed:
            self._changed.wait_for(lambda: self._unfinished == 0)

    def _foreground_active(self) -> bool:
        running = self._current is not None and not self._current.background
        return running or any(not job.finished for job in self._foreground)

    def _preempt(self) -> None:
        current = self._current
        if current is not None and current.background:
            current.request_yield()

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._foreground or self._background))
                job = (self._foreground or self._background).popleft()
                self._current = job
            try:
                job.execute()
            finally:
                with self._changed:
                    self._current = None
                    self._unfinished -= 1
                    self._changed.notify_all()
