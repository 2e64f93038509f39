"""The one way a page action becomes a job: keyed by content (store folder, models, settings), tagged with its
store folder and dataset and the equivalent `trend ...` command, submitted to the job manager; ``existing_job``,
the same look-up without starting anything (what pages show results through); and ``in_background``, under which
the jobs submitted are background work that gives way to a page's (the demo warm-up's)."""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from trend_core.models.members import dataset_of, home_of
from trend_core.models.zoo import Zoo
from trend_core.runtime.jobs import Job, JobManager, device_lane, get_manager
from trend_core.storage.store import content_key
from trend_core.training.threads import dataset_threads

VERSION = "analysis-jobs/v1"

_LOOKUP_ONLY = contextvars.ContextVar("trend_lookup_only", default=False)
_BACKGROUND = contextvars.ContextVar("trend_background", default=False)


class _NotStarted(Exception):
    """Raised by ``submit_job`` inside ``existing_job`` when no job has that key."""


def submit_job(
    zoo: Zoo,
    key_parts: Sequence[Any],
    run: Callable[[Job], Any],
    *,
    title: str,
    kind: str,
    device: Any,
    store: Any,
    command: str,
    manager: JobManager | None,
    models: Sequence[str],
    meta: dict | None = None,
    key: str | None = None,
) -> Job:
    """Submit ``run`` as a job over ``models`` (their dataset goes into the job's meta) keyed by content (or by
    ``key`` when the caller computed it), recording ``command``; inside ``existing_job`` only look it up, inside
    ``in_background`` submit it as background work."""
    home = home_of(zoo)
    key = key if key is not None else content_key(VERSION, kind, home, *key_parts)
    meta = {**(meta or {}), "home": home, "dataset": dataset_of(models), "command": command}
    if _LOOKUP_ONLY.get():
        found = (manager or get_manager()).get(key, store=store)
        if found is None:
            raise _NotStarted(key)
        if found.from_store and not found.meta:  # rebuilt from the store: say what it was
            found.title, found.kind, found.meta = title, kind, dict(meta)
        return found
    return (manager or get_manager()).submit(
        key,
        in_threads(run, meta["dataset"], device_lane(device)),
        title=title,
        kind=kind,
        device=device_lane(device),
        store=store,
        log_dir=Path(zoo.root) / "logs",
        meta=meta,
        background=_BACKGROUND.get(),
    )


@contextmanager
def in_background() -> Iterator[None]:
    """Submit the jobs started inside (in this thread) as background work: each waits for the device's page jobs
    and yields to a new one (``trend_core.runtime.jobs``); the demo warm-up submits its runs this way."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


def in_threads(run: Callable[[Job], Any], dataset: str | None, lane: str) -> Callable[[Job], Any]:
    """``run`` under the CPU thread setting for heavy work on ``dataset`` on the device ``lane`` (one thread for
    small images on the CPU: ``trend_core.training.threads.dataset_threads``)."""

    def threaded(job: Job) -> Any:
        with dataset_threads(dataset, lane):
            return run(job)

    return threaded


def existing_job(submit: Callable[..., Job], *args: Any, **kwargs: Any) -> Job | None:
    """The job ``submit(*args, **kwargs)`` would give (running, finished in this process, or done in the
    results store) without starting anything; None when there is none. A page shows results through this, so
    what it shows always belongs to the settings on screen. Bad input raises the submit's TrendError."""
    token = _LOOKUP_ONLY.set(True)
    try:
        return submit(*args, **kwargs)
    except _NotStarted:
        return None
    finally:
        _LOOKUP_ONLY.reset(token)


def belongs_to(job: Job, home: str, dataset: str, strict: bool = False) -> bool:
    """Whether ``job`` ran on the store folder ``home`` (resolved) and on ``dataset``. A job that does not say
    (made by an older version) counts as a match unless ``strict``."""
    meta = job.meta
    if strict:
        return meta.get("home") == home and meta.get("dataset", dataset) == dataset
    return meta.get("home", home) == home and meta.get("dataset", dataset) == dataset
