"""Dataset facts the pages ask for, cached per server process."""

from __future__ import annotations

import streamlit as st


@st.cache_data(show_spinner=False)
def count_test_images(dataset: str) -> int:
    """How many test images ``dataset`` has (the most an evaluation can use)."""
    from trend_core.data.datasets import load_dataset

    return len(load_dataset(dataset).test)
