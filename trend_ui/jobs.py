"""Showing background jobs on a page: live progress with a cancel button, the error, or the result."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

REFRESH_SECONDS = 1.0


def _manager():
    from trend_core.jobs import get_manager

    return get_manager()


def remember_job(slot: str, job) -> None:
    """Remember which job this page's ``slot`` (e.g. 'transfer') shows in this browser session."""
    st.session_state[f"trend_job:{slot}"] = job.key


def recalled_job(slot: str, kind: str | None = None, home=None, dataset: str | None = None):
    """The job this session last showed in ``slot``; after a reload (new session) the newest job of ``kind``.
    Either way only a job of the store folder ``home`` and the dataset ``dataset`` (default: the sidebar's),
    so a result is never shown under another dataset's class names."""
    manager = _manager()
    if home is None or dataset is None:
        from .context import context

        ctx = context()
        home = ctx.home if home is None else home
        dataset = ctx.dataset if dataset is None else dataset
    where = str(Path(home).expanduser().resolve())
    key = st.session_state.get(f"trend_job:{slot}")
    job = manager.get(key) if key else None
    if job is not None and not belongs_to(job, where, dataset):  # the sidebar changed since
        job = None
    if job is None and kind is not None:
        found = [j for j in manager.jobs(kind=kind) if belongs_to(j, where, dataset, strict=True)]
        job = found[0] if found else None
        if job is not None:
            remember_job(slot, job)
    return job


def belongs_to(job, home: str, dataset: str, strict: bool = False) -> bool:
    """Whether ``job`` ran on the store folder ``home`` and on ``dataset`` (the engine's rule)."""
    from trend_core.analysis_jobs import belongs_to as engine_belongs_to

    return engine_belongs_to(job, home, dataset, strict)


def slot_result(slot: str, hint: str) -> Any | None:
    """The result of the job shown in ``slot`` (of the same kind), with its progress while it runs; before any
    job, ``hint`` tells the user what to do."""
    job = recalled_job(slot, kind=slot)
    if job is None:
        st.info(hint)
        return None
    return job_panel(job)


def job_panel(job, *, show_done: bool = False) -> Any | None:
    """Show ``job``'s state and return its result once done (None while running, failed or cancelled)."""
    if job is None:
        return None
    from trend_core.jobs import JobStatus

    show_command(job)
    if job.status is JobStatus.DONE:
        if show_done:
            origin = "from the store" if job.from_store else f"in {job.elapsed:.1f} s"
            st.success(f"{job.title}: done ({origin}).")
        return job.result
    if job.status is JobStatus.FAILED:
        st.error(job.error or f"{job.title} failed.")
        return None
    if job.status is JobStatus.CANCELLED:
        st.info(f"{job.title} was cancelled.")
        return None
    _live_progress(job.key)
    return None


def show_command(job) -> None:
    """The `trend ...` command that reproduces this job's result from a shell (copyable)."""
    command = job.meta.get("command")
    if command:
        with st.expander("Equivalent command", icon=":material/terminal:"):
            st.code(command, language="bash")


@st.fragment(run_every=REFRESH_SECONDS)
def _live_progress(key: str) -> None:
    """Re-drawn every second while the job runs; reruns the whole page once it has finished."""
    job = _manager().get(key)
    if job is None or job.finished:
        st.rerun()
        return
    state = "waiting for the device" if job.status.value == "queued" else f"{job.elapsed:.0f} s"
    st.progress(job.fraction, text=f"{job.title} ({state}): {job.message}")
    if st.button("Cancel", key=f"cancel-{key}", icon=":material/cancel:"):
        job.cancel()
        st.rerun()
