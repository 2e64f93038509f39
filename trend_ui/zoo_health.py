"""What the Model zoo page says about the store's health: damaged or incomplete entries, and whether a name
is already taken (so an upload over it asks for confirmation)."""

from __future__ import annotations

import streamlit as st


def zoo_has(ctx, name: str) -> bool:
    """Whether ``name`` parses and the zoo already holds that model (False for an empty or bad name)."""
    from trend_core.errors import TrendError

    if not name.strip():
        return False
    try:
        return ctx.zoo.has(name.strip())
    except TrendError:
        return False


def zoo_problems(ctx) -> None:
    """One warning listing the damaged or incomplete entries of the models folder, if there are any."""
    problems = ctx.zoo.problems()
    if problems:
        shown = "; ".join(f"{p['name'] or 'key ' + p['key']}: {p['problem']}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        st.warning(
            f"{len(problems)} damaged or incomplete entr{'y' if len(problems) == 1 else 'ies'} in "
            f"{ctx.zoo.models_dir}: {shown}{more}. `trend zoo clean --home {ctx.home}` removes them."
        )
