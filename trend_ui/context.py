"""The sidebar (dataset, device, store folder, running jobs) and the AppContext every page reads."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from .cluster import executor_status

CONTEXT_KEY = "trend_context"
DEVICE_LABELS = {"auto": "Auto", "cpu": "CPU", "cuda": "CUDA"}


@dataclass
class AppContext:
    """What the user chose in the sidebar: dataset, device choice, and the store folder."""

    dataset: str
    device: str  # "auto", "cpu" or "cuda"; pass to trend_core, which resolves it
    home: Path
    _zoo: object = field(default=None, repr=False)
    _store: object = field(default=None, repr=False)

    @property
    def zoo(self):
        """The model zoo under the store folder (trend_core.zoo.Zoo)."""
        if self._zoo is None:
            from trend_core.zoo import Zoo

            self._zoo = Zoo(self.home)
        return self._zoo

    @property
    def store(self):
        """The results store under the store folder (one shared Store per folder and process)."""
        if self._store is None:
            from trend_core.store import get_store

            self._store = get_store(self.home)
        return self._store

    def models(self) -> list[dict]:
        """Metadata of the zoo's models for the chosen dataset."""
        return self.zoo.list(self.dataset)


def _default_home() -> str:
    from trend_core.zoo import default_home

    return str(default_home())


@st.cache_data(show_spinner=False)
def _device_description() -> tuple[str, bool]:
    import torch

    from trend_core.devices import describe_devices

    return describe_devices(), bool(torch.cuda.is_available())


@st.cache_data(show_spinner=False)
def _datasets() -> list[str]:
    from trend_core.data import list_datasets

    return list_datasets()


def sidebar() -> AppContext:
    """Draw the sidebar and return (and remember for this run) the user's AppContext."""
    with st.sidebar:
        st.markdown("### TREND Lab")
        datasets = _datasets()
        dataset = st.selectbox("Dataset", datasets, index=datasets.index("digits"), key="sb_dataset",
                               help="digits is embedded; CIFAR and ImageNet are read from $TREND_DATA.")
        found, has_cuda = _device_description()
        device = st.radio("Device", list(DEVICE_LABELS), format_func=DEVICE_LABELS.get, horizontal=True,
                          key="sb_device", help="Auto takes CUDA when PyTorch sees a GPU, else the CPU.")
        st.caption(f"Found: {found}")
        executor_status()
        if device == "cuda" and not has_cuda:
            st.error("No CUDA GPU is visible to PyTorch; using the CPU instead.")
            device = "cpu"
        if "sb_home" not in st.session_state:
            st.session_state["sb_home"] = os.environ.get("TREND_HOME") or _default_home()
        home = st.text_input("Store folder", key="sb_home",
                             help="Models, cached results and job logs live here ($TREND_HOME).")
        _active_jobs()
    ctx = AppContext(dataset=dataset, device=device, home=Path(home.strip() or _default_home()).expanduser())
    st.session_state[CONTEXT_KEY] = ctx
    return ctx


def context() -> AppContext:
    """The AppContext of this run (drawing the sidebar if the page runs on its own)."""
    ctx = st.session_state.get(CONTEXT_KEY)
    return ctx if isinstance(ctx, AppContext) else sidebar()


def _active_jobs() -> None:
    from trend_core.jobs import get_manager

    active = get_manager().jobs(active_only=True)
    if active:
        st.markdown("**Running jobs**")
        for job in active[:5]:
            st.caption(f"{job.title}: {job.status.value}, {job.fraction:.0%}")
