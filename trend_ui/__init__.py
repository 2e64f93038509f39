"""Shared Streamlit helpers for the TREND Lab pages: sidebar context, error guard, job panel, empty states,
downloads. Streamlit lives here and in the pages; torch stays in trend_core (imported lazily)."""

from . import zoo_actions  # noqa: F401  (pages call trend_ui.zoo_actions.*)
from .context import AppContext, context, sidebar
from .datasets import count_test_images
from .downloads import download_frame
from .feedback import empty_state, guard, has_models, launching, page_intro
from .jobs import belongs_to, forget_job, job_for, job_panel, recalled_job, remember_job, slot_result
from .tables import model_labels, zoo_frame, zoo_label_map
from .zoo_health import zoo_has, zoo_problems

__all__ = [
    "AppContext",
    "belongs_to",
    "context",
    "count_test_images",
    "download_frame",
    "empty_state",
    "forget_job",
    "guard",
    "has_models",
    "job_for",
    "job_panel",
    "launching",
    "model_labels",
    "page_intro",
    "recalled_job",
    "remember_job",
    "sidebar",
    "slot_result",
    "zoo_frame",
    "zoo_has",
    "zoo_label_map",
    "zoo_problems",
]
