"""Figures for the TM(eps) fit: fitted f_st, f_ss and TM against a denser measured sweep.

Pure functions over DataFrames with columns eps, f_st, f_ss, tm (curves and measured points alike).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from trend_core.plots import base_layout

COUNT_COLORS = {"f_st": "#1f77b4", "f_ss": "#ff7f0e"}
TM_COLOR = "#2ca02c"


def tm_curve_figure(
    curve: pd.DataFrame, measured: pd.DataFrame | None = None, fit_eps: Sequence[float] = (), title: str = ""
) -> go.Figure:
    """Two panels: counts f_st and f_ss (left) and TM = f_st / f_ss (right), fitted lines over measured points.

    ``curve``: the fit's predictions on a dense eps range; ``measured``: the measured sweep; points whose eps
    is in ``fit_eps`` (the ones the fit used) are drawn as larger diamonds.
    """
    for col in ("eps", "f_st", "f_ss", "tm"):
        if col not in curve.columns:
            raise ValueError(f"tm_curve_figure needs column {col} in the curve")
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=["adversarial counts", "transferability TM(eps)"], horizontal_spacing=0.12
    )
    for col in ("f_st", "f_ss"):
        fig.add_trace(
            go.Scatter(
                x=curve["eps"],
                y=curve[col],
                mode="lines",
                name=f"{col} fit",
                line=dict(color=COUNT_COLORS[col]),
                legendgroup=col,
                hovertemplate=f"{col} fit<br>eps %{{x:.4g}}<br>%{{y:.1f}} images<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=curve["eps"],
            y=curve["tm"],
            mode="lines",
            name="TM fit",
            legendgroup="tm",
            line=dict(color=TM_COLOR),
            hovertemplate="TM fit<br>eps %{x:.4g}<br>TM %{y:.3f}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    if measured is not None and len(measured):
        used = np.isin(np.round(measured["eps"].to_numpy(float), 10), np.round(np.asarray(fit_eps, float), 10))
        for mask, suffix, symbol, size in ((~used, "measured", "circle", 7), (used, "fit points", "diamond", 11)):
            part = measured[mask]
            if not len(part):
                continue
            for col in ("f_st", "f_ss"):
                fig.add_trace(
                    go.Scatter(
                        x=part["eps"],
                        y=part[col],
                        mode="markers",
                        name=f"{col} {suffix}",
                        legendgroup=col,
                        marker=dict(color=COUNT_COLORS[col], symbol=symbol, size=size),
                        hovertemplate=f"{col} {suffix}<br>eps %{{x:.4g}}<br>%{{y}} images<extra></extra>",
                    ),
                    row=1,
                    col=1,
                )
            fig.add_trace(
                go.Scatter(
                    x=part["eps"],
                    y=part["tm"],
                    mode="markers",
                    name=f"TM {suffix}",
                    legendgroup="tm",
                    marker=dict(color=TM_COLOR, symbol=symbol, size=size),
                    hovertemplate=f"TM {suffix}<br>eps %{{x:.4g}}<br>TM %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=2,
            )
    fig.update_xaxes(title_text="eps (L-inf)")
    fig.update_yaxes(title_text="images", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="TM = f_st / f_ss", row=1, col=2, range=[0, 1.05])
    base_layout(fig)
    fig.update_layout(title_text=title, height=420, margin=dict(l=60, r=20, t=70, b=50))
    return fig
