"""What the pages show that is not code: the logo and the style sheet under the top-level ``assets/`` folder."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

ASSETS = Path(__file__).resolve().parents[1] / "assets"
LOGO = ASSETS / "logo.svg"
STYLE = ASSETS / "style.css"


@st.cache_data(show_spinner=False)
def _style() -> str:
    return STYLE.read_text(encoding="utf-8") if STYLE.is_file() else ""


def apply_assets() -> None:
    """The logo at the top of the sidebar and the style sheet, on every page (skipped quietly if absent)."""
    if LOGO.is_file():
        st.logo(str(LOGO), size="large")
    css = _style()
    if css:
        st.html(f"<style>{css}</style>")
