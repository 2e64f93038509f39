"""Figures for ensemble attacks and TREND ensembles: success over eps, gradient-domination tiles, agreement,
robustness against each member, and robustness as the ensemble grows (the paper's Figs. 6-9).

Pure functions over long-format DataFrames and plain arrays; no engine objects, no Streamlit.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

RULE_LABELS = {"dag": "D-AG", "empir": "EMPIR", "ugd": "U-GD", "agd": "A-GD"}
RULE_ORDER = tuple(RULE_LABELS.values())
SUCCESS_LABEL = "attack success"


def rule_label(rule: str) -> str:
    """The paper's name of a direction rule ("agd" -> "A-GD"); unknown names pass through."""
    return RULE_LABELS.get(str(rule).lower(), str(rule))


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {', '.join(missing)}")


def success_lines_figure(df: pd.DataFrame, value: str = "success_rate") -> go.Figure:
    """Attack success of each rule over eps: one line per rule (``df``: rule, eps, ``value`` in [0, 1])."""
    _require(df, ["rule", "eps", value], "success_lines_figure")
    fig = go.Figure()
    data = df.assign(label=df["rule"].map(rule_label))
    for label in _ordered(data["label"]):
        part = data[data["label"] == label].sort_values("eps")
        fig.add_trace(go.Scatter(x=part["eps"], y=part[value], mode="lines+markers", name=label,
                                 hovertemplate=f"{label}<br>eps %{{x:.4g}}<br>{SUCCESS_LABEL} %{{y:.1%}}<extra></extra>"))
    fig.update_layout(xaxis_title="eps (L-inf)", yaxis_title=SUCCESS_LABEL, yaxis_tickformat=".0%",
                      yaxis_range=[0, 1.02], legend_title_text="attack", height=380,
                      margin=dict(l=60, r=20, t=40, b=50))
    return fig


def success_bars_figure(df: pd.DataFrame, eps: float, value: str = "success_rate") -> go.Figure:
    """Attack success of each rule at one eps (the measured eps nearest to ``eps``), as labelled bars."""
    _require(df, ["rule", "eps", value], "success_bars_figure")
    nearest = float(df["eps"].iloc[(df["eps"] - float(eps)).abs().argsort().iloc[0]])
    part = df[np.isclose(df["eps"], nearest)].assign(label=lambda d: d["rule"].map(rule_label))
    order = _ordered(part["label"])
    part = part.set_index("label").loc[order]
    fig = go.Figure(go.Bar(x=order, y=part[value], text=[f"{v:.1%}" for v in part[value]], textposition="outside",
                           hovertemplate=f"%{{x}}<br>{SUCCESS_LABEL} %{{y:.1%}}<extra></extra>", name=SUCCESS_LABEL))
    fig.update_layout(title_text=f"eps = {nearest:.4g}", xaxis_title="attack", yaxis_title=SUCCESS_LABEL,
                      yaxis_tickformat=".0%", yaxis_range=[0, 1.1], height=380, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def _ordered(labels: pd.Series) -> list[str]:
    seen = list(dict.fromkeys(labels))
    return [r for r in RULE_ORDER if r in seen] + [r for r in seen if r not in RULE_ORDER]


def agreement_figure(df: pd.DataFrame) -> go.Figure:
    """Per-member agreement: the fraction of pixels where each rule's direction has the member's sign.

    ``df``: member, rule, agreement in [0, 1]; grouped bars, one group per member.
    """
    _require(df, ["member", "rule", "agreement"], "agreement_figure")
    data = df.assign(label=df["rule"].map(rule_label))
    members = list(dict.fromkeys(data["member"]))
    fig = go.Figure()
    for label in _ordered(data["label"]):
        part = data[data["label"] == label].set_index("member").reindex(members)
        fig.add_trace(go.Bar(x=members, y=part["agreement"], name=label,
                             text=[f"{v:.0%}" if pd.notna(v) else "" for v in part["agreement"]],
                             hovertemplate=f"{label}<br>%{{x}}<br>agreement %{{y:.1%}}<extra></extra>"))
    fig.update_layout(barmode="group", xaxis_title="member", yaxis_title="sign agreement with the member",
                      yaxis_tickformat=".0%", yaxis_range=[0, 1.05], legend_title_text="attack", height=380,
                      margin=dict(l=60, r=20, t=40, b=50))
    return fig


def _tile_trace(image: np.ndarray, name: str):
    """A heatmap (one channel, diverging around 0) or an RGB image (three channels) of values in [-1, 1]."""
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    scale = float(np.abs(arr).max()) or 1.0
    if arr.ndim == 2:
        return go.Heatmap(z=arr[::-1] / scale, zmin=-1, zmax=1, zmid=0, colorscale="RdBu_r", showscale=False,
                          name=name, hovertemplate=f"{name}<br>value %{{z:.2f}} (x{scale:.3g})<extra></extra>")
    rgb = ((np.transpose(arr, (1, 2, 0)) / scale + 1) / 2 * 255).clip(0, 255).astype(np.uint8)
    return go.Image(z=rgb, name=name)


def image_tiles_figure(rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]], tile_px: int = 120) -> go.Figure:
    """A grid of image tiles: ``rows`` = [(row label, [(tile title, array (C, H, W) or (H, W)), ...]), ...].

    Each tile is scaled by its own largest magnitude; red = positive, blue = negative (one channel).
    """
    n_rows = len(rows)
    n_cols = max((len(tiles) for _, tiles in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        return go.Figure()
    titles = []
    for _, tiles in rows:
        titles += [title for title, _ in tiles] + [""] * (n_cols - len(tiles))
    fig = make_subplots(rows=n_rows, cols=n_cols, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=min(0.08, 0.5 / n_rows), row_titles=[label for label, _ in rows])
    for r, (label, tiles) in enumerate(rows, start=1):
        for c, (title, image) in enumerate(tiles, start=1):
            fig.add_trace(_tile_trace(image, f"{label}: {title}" if label else title), row=r, col=c)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, scaleanchor="x", constrain="domain")
    for i in range(2, n_rows * n_cols + 1):  # square pixels in every tile
        fig.layout[f"yaxis{i}"].scaleanchor = f"x{i}"
    fig.update_annotations(font_size=11)
    fig.update_layout(height=max(260, tile_px * n_rows + 80), width=None, showlegend=False,
                      margin=dict(l=20, r=80, t=50, b=20))
    return fig


def robustness_bars_figure(df: pd.DataFrame, ensemble_label: str = "ensemble") -> go.Figure:
    """Accuracy under attack of the ensemble and of each member alone, with "x times more robust" labels.

    ``df``: model, accuracy (under attack, in [0, 1]); the row whose model is ``ensemble_label`` is the ensemble.
    """
    _require(df, ["model", "accuracy"], "robustness_bars_figure")
    ensemble_rows = df[df["model"] == ensemble_label]
    ens_acc = float(ensemble_rows["accuracy"].iloc[0]) if len(ensemble_rows) else float("nan")
    texts, colors = [], []
    for model, acc in zip(df["model"], df["accuracy"]):
        if model == ensemble_label:
            texts.append(f"{acc:.1%}")
            colors.append("#d62728")
        else:
            texts.append(f"{acc:.1%} ({robustness_ratio_text(ens_acc, acc)})")
            colors.append("#1f77b4")
    fig = go.Figure(go.Bar(x=list(df["model"]), y=df["accuracy"], text=texts, textposition="outside",
                           marker_color=colors, name="accuracy under attack",
                           hovertemplate="%{x}<br>accuracy under attack %{y:.1%}<extra></extra>"))
    fig.update_layout(xaxis_title="model", yaxis_title="accuracy under attack", yaxis_tickformat=".0%",
                      yaxis_range=[0, 1.15], height=400, margin=dict(l=60, r=20, t=40, b=60))
    return fig


def robustness_ratio_text(ensemble_acc: float, member_acc: float) -> str:
    """'2.5x' = the ensemble's accuracy under attack divided by the member's ('inf' when the member has none)."""
    if not np.isfinite(ensemble_acc) or not np.isfinite(member_acc):
        return "n/a"
    if member_acc <= 0:
        return "inf x" if ensemble_acc > 0 else "1.00x"
    return f"{ensemble_acc / member_acc:.2f}x"


def growth_figure(df: pd.DataFrame, value: str = "accuracy", series: str | None = "series") -> go.Figure:
    """Robustness as the ensemble grows (Fig. 9): ``value`` over ``size``, one line per ``series``.

    ``df``: size, ``value`` in [0, 1], optionally ``series`` (e.g. "clean" / "A-GD eps 0.1") and ``members``.
    """
    _require(df, ["size", value], "growth_figure")
    fig = go.Figure()
    groups = [(None, df)] if series is None or series not in df.columns else list(df.groupby(series, sort=False))
    for name, part in groups:
        part = part.sort_values("size")
        custom = part["members"] if "members" in part.columns else None
        fig.add_trace(go.Scatter(x=part["size"], y=part[value], mode="lines+markers", name=str(name or value),
                                 customdata=custom,
                                 hovertemplate=("size %{x}<br>%{y:.1%}" + ("<br>%{customdata}" if custom is not None else "")
                                                + "<extra>%{fullData.name}</extra>")))
    fig.update_layout(xaxis_title="ensemble size", yaxis_title=value.replace("_", " "), yaxis_tickformat=".0%",
                      yaxis_range=[0, 1.05], xaxis_dtick=1, legend_title_text="", height=380,
                      margin=dict(l=60, r=20, t=40, b=50))
    return fig
