"""Figures for the robustness audit: robust accuracy against eps, one line per attack and one for the worst case.

Pure functions over the audit's DataFrames; no engine objects, no Streamlit.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go

from trend_core.plots import base_layout

WORST_LABEL = "worst case (every attack)"
DASHES = {"baseline": "dot", "whitebox": "solid", "blackbox": "dash", "transfer": "dashdot"}


def robust_accuracy_figure(
    robust: pd.DataFrame,
    worst_case: pd.DataFrame,
    title: str | None = None,
    focus: Sequence[float] | None = None,
) -> go.Figure:
    """Robust accuracy (y, 0-100%) over eps (x): a line per attack (dashed by kind: dotted A-GD, solid white-box,
    dashed black-box, dash-dot transfer) and a thick black line for the per-image worst case. ``focus``: the
    eps values the user chose; the x-axis spans them, so a sanity check far beyond (eps 0.5) does not squeeze
    them into a corner (its points stay in the hover data and in the table beside the chart)."""
    missing = {"attack", "eps", "robust_accuracy"} - set(robust.columns)
    if missing or not {"eps", "robust_accuracy"} <= set(worst_case.columns):
        raise ValueError("robust_accuracy_figure needs attack, eps, robust_accuracy (and eps, robust_accuracy)")
    fig = go.Figure()
    for attack in dict.fromkeys(robust["attack"]):
        part = robust[robust["attack"] == attack].sort_values("eps")
        kind = part["kind"].iloc[0] if "kind" in part.columns else "whitebox"
        fig.add_trace(
            go.Scatter(
                x=part["eps"],
                y=part["robust_accuracy"],
                mode="lines+markers",
                name=attack,
                line=dict(dash=DASHES.get(kind, "solid")),
                hovertemplate=f"{attack}<br>eps %{{x:.4g}}<br>robust %{{y:.1%}}<extra></extra>",
            )
        )
    worst = worst_case.sort_values("eps")
    fig.add_trace(
        go.Scatter(
            x=worst["eps"],
            y=worst["robust_accuracy"],
            mode="lines+markers",
            name=WORST_LABEL,
            line=dict(color="black", width=4),
            hovertemplate="worst case<br>eps %{x:.4g}<br>robust %{y:.1%}<extra></extra>",
        )
    )
    fig.update_yaxes(title="robust accuracy", tickformat=".0%", range=[0, 1.02])
    fig.update_xaxes(title="eps (L-inf, pixel units)")
    if focus:
        top = max(float(e) for e in focus)
        fig.update_xaxes(range=[0, 1.1 * top])
        beyond = sorted({float(e) for e in worst["eps"] if float(e) > 1.1 * top})
        if beyond:
            shown = ", ".join(f"{e:g}" for e in beyond)
            fig.add_annotation(
                text=f"sanity check at eps {shown}: off the chart, in the table",
                xref="paper",
                yref="paper",
                x=1,
                y=1.02,
                showarrow=False,
                xanchor="right",
                font=dict(size=11, color="gray"),
            )
    return base_layout(fig, title, height=460)
