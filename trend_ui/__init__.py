"""Shared Streamlit helpers for the TREND Lab pages: sidebar context, error guard, job panel, empty states,
downloads. Streamlit lives here and in the pages; torch stays in trend_core (imported lazily)."""
from .context import AppContext, context, sidebar
from .datasets import count_test_images
from .downloads import download_frame
from .feedback import empty_state, guard, has_models, launching, page_intro
from .jobs import belongs_to, forget_job, job_for, job_panel, recalled_job, remember_job, slot_result
from .tables import model_labels, zoo_frame, zoo_label_map
from .zoo_health import zoo_has, zoo_problems
from . import zoo_actions

__all__ = [
    "AppContext", "belongs_to", "context", "sidebar", "download_frame", "empty_state", "guard", "has_models",
    "count_test_images", "page_intro", "job_panel", "remember_job", "recalled_job", "slot_result", "zoo_frame",
    "forget_job", "job_for", "launching", "model_labels", "zoo_has", "zoo_label_map",
    "zoo_problems",
]
