"""The sidebar's executor line: local threads, or the Ray cluster's nodes, GPUs, CPUs and tasks."""

from __future__ import annotations

import streamlit as st


def executor_status() -> None:
    """One caption saying where heavy work runs; a Ray cluster that cannot be reached is one error sentence."""
    from trend_core.errors import TrendError
    from trend_core.runtime.executors import get_executor

    try:
        status = get_executor().status()
    except TrendError as exc:
        st.error(str(exc))
        return
    st.caption(describe(status))


def describe(status: dict) -> str:
    """The caption text for an executor's ``status()``."""
    if status.get("executor") != "ray":
        return "Executor: local (this server's threads; set TREND_RAY_ADDRESS to use a Ray cluster)"
    return (
        f"Executor: Ray at {status['address']}: {status['nodes']} node{'s' * (status['nodes'] != 1)}, "
        f"{status['gpus']} GPUs, {status['cpus']} CPUs; tasks {status['running']} running, "
        f"{status['queued']} queued"
    )
