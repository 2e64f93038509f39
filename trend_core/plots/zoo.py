"""Figures of the model zoo: clean accuracy per model (the paper's Tables IV-VI as a chart)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from trend_core.plots import base_layout, label_margin


def accuracy_figure(
    frame: pd.DataFrame, value: str = "test acc %", label: str = "label", color: str | None = "input"
) -> go.Figure:
    """Horizontal bars of clean accuracy (%) per model, labelled with the models' short names."""
    data = frame.dropna(subset=[value]).sort_values(value)
    if data.empty:
        return base_layout(go.Figure(), height=120)
    hover = [c for c in ("name", "arch", "optimizer", "seed", "weight bits", "act bits") if c in data.columns]
    fig = px.bar(
        data,
        x=value,
        y=label,
        orientation="h",
        color=color if color in data.columns else None,
        hover_data=hover,
        text=data[value].map(lambda v: f"{v:.1f}"),
    )
    low = max(0.0, float(data[value].min()) - 10)
    fig.update_xaxes(range=[low, 100.5], title_text="clean test accuracy (%)")
    fig.update_yaxes(type="category", title_text=None)
    fig.update_traces(textposition="inside", insidetextanchor="end")
    base_layout(fig, height=max(220, 26 * len(data) + 90))
    fig.update_layout(margin=dict(l=label_margin(data[label]) + 10, r=10, t=30, b=10), legend_title_text=color)
    return fig
