"""Showing background jobs on a page: live progress with a cancel button, the error, or the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

REFRESH_SECONDS = 1.0


def _manager():
    from trend_core.runtime.jobs import get_manager

    return get_manager()


def remember_job(slot: str, job) -> None:
    """Remember which job this page's ``slot`` (e.g. 'transfer') shows in this browser session, and mark the job
    as shown there, so after a reload another slot's job of the same kind (the overview's zoo build on the Model
    zoo's Train tab) is not taken for this slot's."""
    st.session_state[f"trend_job:{slot}"] = job.key
    slots = job.meta.setdefault("slots", [])
    if slot not in slots:
        slots.append(slot)


def forget_job(slot: str) -> None:
    """Show no job in ``slot`` until the next launch: after a launch that failed on its input, an older result
    must not stay on screen as if it belonged to the new settings."""
    st.session_state[f"trend_job:{slot}"] = ""


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
    if key == "":  # forgotten on purpose (forget_job)
        return None
    job = manager.get(key) if key else None
    if job is not None and not belongs_to(job, where, dataset):  # the sidebar changed since
        job = None
    if job is None and kind is not None:
        found = [
            j
            for j in manager.jobs(kind=kind)
            if belongs_to(j, where, dataset, strict=True) and slot in j.meta.get("slots", [slot])
        ]
        job = found[0] if found else None
        if job is not None:
            remember_job(slot, job)
    return job


def job_for(submit, *args, **kwargs):
    """The job that ``submit(*args, **kwargs)`` would give (running, done here or in the results store), without
    starting one; None when there is none or the settings are invalid. A page that shows its results through
    this only ever shows the results of the settings on screen."""
    from trend_core.errors import TrendError
    from trend_core.service.submit import existing_job

    try:
        return existing_job(submit, *args, **kwargs)
    except TrendError:
        return None


def belongs_to(job, home: str, dataset: str, strict: bool = False) -> bool:
    """Whether ``job`` ran on the store folder ``home`` and on ``dataset`` (the engine's rule)."""
    from trend_core.service.submit import belongs_to as engine_belongs_to

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
    from trend_core.runtime.jobs import JobStatus

    show_command(job)
    if job.status is JobStatus.DONE:
        if show_done:
            from trend_core.runtime.jobs import format_seconds

            origin = "from the store" if job.from_store else f"in {format_seconds(job.elapsed)}"
            st.success(f"{job.title}: done ({origin}).")
        return job.result
    if job.status is JobStatus.FAILED:
        st.error(job.error or f"{job.title} failed.")
        return None
    if job.status is JobStatus.CANCELLED and job.yielded:  # a warm-up run that gave the device to a page's run
        st.info(f"{job.title} was paused for your run; the warm-up computes it again once yours is done.")
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
    st.progress(job.fraction, text=f"{job.title}: {job.message} ({job.fraction:.0%}; {job.timing()})")
    if st.button("Cancel", key=f"cancel-{key}", icon=":material/cancel:"):
        job.cancel()
        st.rerun()
