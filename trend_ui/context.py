"""The sidebar (dataset, device, store folder, running jobs) and the AppContext every page reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from .cluster import executor_status

CONTEXT_KEY = "trend_context"
PROFILE_KEY = "profile"  # session-state key of the method profile (paper or authors)
DEVICE_LABELS = {"auto": "Auto", "cpu": "CPU", "cuda": "CUDA"}
PROFILE_LABELS = {"paper": "Paper", "authors": "Authors' code"}


@dataclass
class AppContext:
    """What the user chose in the sidebar: dataset, device choice, the store folder and the method profile."""

    dataset: str
    device: str  # "auto", "cpu" or "cuda"; pass to trend_core, which resolves it
    home: Path
    profile: str = "paper"  # "paper" or "authors" (trend_core.config.profiles); part of every job's key
    _zoo: object = field(default=None, repr=False)
    _store: object = field(default=None, repr=False)

    @property
    def zoo(self):
        """The model zoo under the store folder (trend_core.models.zoo.Zoo)."""
        if self._zoo is None:
            from trend_core.models.zoo import Zoo

            self._zoo = Zoo(self.home)
        return self._zoo

    @property
    def store(self):
        """The results store under the store folder (one shared Store per folder and process)."""
        if self._store is None:
            from trend_core.storage.store import get_store

            self._store = get_store(self.home)
        return self._store

    @property
    def imported_data(self) -> bool:
        """Whether the dataset is one the user imported (`trend data import`): evaluation data only, so its
        networks are imported (.pt2, user/<dataset>/<name>), never trained here."""
        from trend_core.config.datasets import BUILT_IN

        return self.dataset not in BUILT_IN

    def models(self) -> list[dict]:
        """Metadata of the zoo's models for the chosen dataset, the defender's imported networks (user/...) too."""
        return self.zoo.list(self.dataset, imported_networks=True)


@st.cache_data(show_spinner=False)
def _device_description() -> tuple[str, bool]:
    from trend_core.runtime.devices import describe_devices, has_cuda

    return describe_devices(), has_cuda()


def _datasets() -> list[str]:
    """The built-in datasets and those imported so far (read afresh each run: one folder listing, so a dataset
    imported with `trend data import` while the dashboard runs shows up at once)."""
    from trend_core.config.datasets import list_datasets

    return list_datasets()


def sidebar() -> AppContext:
    """Draw the sidebar and return (and remember for this run) the user's AppContext."""
    with st.sidebar:
        st.markdown("### TREND Lab")
        datasets = _datasets()
        dataset = st.selectbox(
            "Dataset",
            datasets,
            index=datasets.index("digits"),
            key="sb_dataset",
            help="digits and MNIST are embedded (MNIST: 10,000 digits, or the full 60,000 "
            "where `trend data download mnist` put them); CIFAR and ImageNet are read from "
            "$TREND_DATA; datasets imported with `trend data import` follow them.",
        )
        found, has_cuda = _device_description()
        device = st.radio(
            "Device",
            list(DEVICE_LABELS),
            format_func=DEVICE_LABELS.get,
            horizontal=True,
            key="sb_device",
            help="Auto takes CUDA when PyTorch sees a GPU, else the CPU.",
        )
        st.caption(f"Found: {found}")
        executor_status()
        if device == "cuda" and not has_cuda:
            st.error("No CUDA GPU is visible to PyTorch; using the CPU instead.")
            device = "cpu"
        home, problem = _store_folder()
        profile = st.radio(
            "Method profile",
            list(PROFILE_LABELS),
            format_func=PROFILE_LABELS.get,
            horizontal=True,
            key=PROFILE_KEY,
            help="Paper: the project's documented choices. Authors' code: every setting as in the TREND "
            "authors' repository (batch-range input quantization, vote ties, ensemble eps 0.01, "
            "CW abort rule, TM fit points); see the README's Method defaults.",
        )
        _active_jobs()
    if problem:
        st.error(problem)
        st.stop()
    ctx = AppContext(dataset=dataset, device=device, home=home, profile=profile)
    st.session_state[CONTEXT_KEY] = ctx
    return ctx


def _store_folder() -> tuple[Path, str | None]:
    """The store folder: a choice among the homes the operator allows (never free text, so a browser cannot
    name server paths), plus a new folder inside the operator's root when one is set; (folder, problem)."""
    from trend_core.errors import TrendError
    from trend_core.storage.homes import check_home, home_in_root, known_homes, operator_root

    homes = [str(h) for h in known_homes()]
    picked = st.session_state.pop("sb_home_pick", None)
    if picked in homes:
        st.session_state["sb_home"] = picked
    if st.session_state.get("sb_home") not in homes:
        st.session_state["sb_home"] = homes[0]
    choice = st.selectbox(
        "Store folder",
        homes,
        key="sb_home",
        help="Models, cached results and job logs live here. The server's operator decides "
        "which folders are offered ($TREND_HOME, $TREND_HOMES, $TREND_HOME_ROOT).",
    )
    root = operator_root()
    if root is not None:
        new = st.text_input(
            f"New store folder in {root}",
            key="sb_home_new",
            placeholder="my-zoo",
            help="One plain folder name; it is created inside the operator's root.",
        )
        if new.strip():
            try:
                folder = home_in_root(new)
                folder.mkdir(parents=True, exist_ok=True)
            except (TrendError, OSError) as exc:
                st.error(
                    str(exc) if isinstance(exc, TrendError) else f"{root / new.strip()} cannot be created ({exc})."
                )
            else:
                st.session_state.pop("sb_home_new", None)
                st.session_state["sb_home_pick"] = str(folder)
                st.rerun()
    try:
        return check_home(choice), None
    except TrendError as exc:
        return Path(choice), f"{exc} Pick another store folder in the sidebar."


def context() -> AppContext:
    """The AppContext of this run (drawing the sidebar if the page runs on its own)."""
    ctx = st.session_state.get(CONTEXT_KEY)
    return ctx if isinstance(ctx, AppContext) else sidebar()


def _active_jobs() -> None:
    from trend_core.runtime.jobs import get_manager

    active = get_manager().jobs(active_only=True)
    if active:
        st.markdown("**Running jobs**")
        for job in active[:5]:
            st.caption(f"{job.title}: {job.status.value}, {job.fraction:.0%} ({job.timing()})")
