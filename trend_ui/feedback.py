"""Messages instead of tracebacks, page introductions and empty states."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

log = logging.getLogger("trend_ui")


@contextmanager
def guard(what: str = "This page") -> Iterator[None]:
    """Run page code, turning a TrendError into its one sentence and any other error into a short note."""
    from trend_core.errors import TrendError

    try:
        yield
    except TrendError as exc:
        st.error(str(exc))
    except Exception as exc:  # a bug: say so briefly, keep the traceback in the server log
        log.exception("%s failed", what)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        st.error(f"{what} hit an unexpected error ({type(exc).__name__}: {first}); the details are in the server log.")


@contextmanager
def launching(what: str, slot: str) -> Iterator[None]:
    """Like ``guard`` around a page's launch; a launch that fails also clears the page's ``slot``, so the one
    error is all the page shows, not an older result as if it belonged to the new settings."""
    from trend_core.errors import TrendError

    from .jobs import forget_job

    try:
        yield
    except TrendError as exc:
        forget_job(slot)
        st.error(str(exc))
    except Exception as exc:  # a bug: as in guard
        forget_job(slot)
        log.exception("%s failed", what)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        st.error(f"{what} hit an unexpected error ({type(exc).__name__}: {first}); the details are in the server log.")


def page_intro(title: str, text: str) -> None:
    """The page title and the sentence or two saying what the page is for."""
    st.title(title)
    st.caption(text)


def empty_state(message: str, page: str | None = None, label: str | None = None) -> None:
    """Tell the user what to do first, with a link to the page where they can do it."""
    st.info(message)
    if page:
        try:
            st.page_link(page, label=label or "Go there", icon=":material/arrow_forward:")
        except Exception:  # page not registered (a page run on its own)
            pass


def has_models(ctx, count: int, purpose: str) -> bool:
    """True when the zoo holds ``count`` models of the sidebar's dataset; else say what to do first.

    ``purpose`` starts the sentence, e.g. "A TM curve needs" or "TREND needs at least".
    """
    if len(ctx.models()) >= count:
        return True
    amount = {1: "one", 2: "two", 3: "three"}.get(count, str(count))
    noun = "model" if count == 1 else "models"
    todo = (
        "build the digits zoo on the Overview page, or train models on the Model zoo page first."
        if not ctx.imported_data
        else f"{ctx.dataset} is data you imported, so import your networks for it (.pt2 files, as "
        f"user/{ctx.dataset}/<name>) on the Model zoo page first."
    )
    empty_state(
        f"{purpose} {amount} {ctx.dataset} {noun} in the zoo: {todo}",
        page="pages/model_zoo.py",
        label="Model zoo",
    )
    return False
