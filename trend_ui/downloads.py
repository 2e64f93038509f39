"""Download buttons for the tables a page shows (CSV and JSON)."""

from __future__ import annotations

import pandas as pd
import streamlit as st


def download_frame(frame: pd.DataFrame, stem: str, key: str | None = None) -> None:
    """Two buttons: the table as CSV and as JSON records (index included as a column)."""
    flat = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame
    key = key or stem
    row = st.container(horizontal=True)
    row.download_button(
        "Download CSV",
        flat.to_csv(index=False).encode(),
        f"{stem}.csv",
        "text/csv",
        key=f"{key}-csv",
        on_click="ignore",
        icon=":material/download:",
    )
    row.download_button(
        "Download JSON",
        flat.to_json(orient="records", indent=2).encode(),
        f"{stem}.json",
        "application/json",
        key=f"{key}-json",
        on_click="ignore",
        icon=":material/download:",
    )
