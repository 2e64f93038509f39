"""Figures for ensemble attacks and TREND ensembles: success over eps, gradient-domination pictures, agreement,
robustness against each member, and robustness as the ensemble grows (the paper's Figs. 6-9).

Pure functions over long-format DataFrames and plain arrays; no engine objects, no Streamlit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from trend_core.attacks.ensemble_pgd import RULE_LABELS
from trend_core.plots import base_layout, image_grid

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
        fig.add_trace(
            go.Scatter(
                x=part["eps"],
                y=part[value],
                mode="lines+markers",
                name=label,
                hovertemplate=f"{label}<br>eps %{{x:.4g}}<br>{SUCCESS_LABEL} %{{y:.1%}}<extra></extra>",
            )
        )
    base_layout(fig)
    fig.update_layout(
        xaxis_title="eps (L-inf)",
        yaxis_title=SUCCESS_LABEL,
        yaxis_tickformat=".0%",
        yaxis_range=[0, 1.02],
        legend_title_text="attack",
        height=380,
        margin=dict(l=60, r=20, t=40, b=50),
    )
    return fig


def success_bars_figure(df: pd.DataFrame, eps: float, value: str = "success_rate") -> go.Figure:
    """Attack success of each rule at one eps (the measured eps nearest to ``eps``), as labelled bars."""
    _require(df, ["rule", "eps", value], "success_bars_figure")
    nearest = float(df["eps"].iloc[(df["eps"] - float(eps)).abs().argsort().iloc[0]])
    part = df[np.isclose(df["eps"], nearest)].assign(label=lambda d: d["rule"].map(rule_label))
    order = _ordered(part["label"])
    part = part.set_index("label").loc[order]
    fig = go.Figure(
        go.Bar(
            x=order,
            y=part[value],
            text=[f"{v:.1%}" for v in part[value]],
            textposition="outside",
            hovertemplate=f"%{{x}}<br>{SUCCESS_LABEL} %{{y:.1%}}<extra></extra>",
            name=SUCCESS_LABEL,
        )
    )
    base_layout(fig)
    fig.update_layout(
        title_text=f"eps = {nearest:.4g}",
        xaxis_title="attack",
        yaxis_title=SUCCESS_LABEL,
        yaxis_tickformat=".0%",
        yaxis_range=[0, 1.1],
        height=380,
        margin=dict(l=60, r=20, t=50, b=50),
    )
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
        fig.add_trace(
            go.Bar(
                x=members,
                y=part["agreement"],
                name=label,
                text=[f"{v:.0%}" if pd.notna(v) else "" for v in part["agreement"]],
                hovertemplate=f"{label}<br>%{{x}}<br>agreement %{{y:.1%}}<extra></extra>",
            )
        )
    base_layout(fig)
    fig.update_layout(
        barmode="group",
        xaxis_title="member",
        yaxis_title="sign agreement with the member",
        yaxis_tickformat=".0%",
        yaxis_range=[0, 1.05],
        legend_title_text="attack",
        height=380,
        margin=dict(l=60, r=20, t=40, b=50),
    )
    return fig


def gradient_figures(views) -> tuple[go.Figure, go.Figure]:
    """The paper's Fig. 7 for one image, from a ``GradientViews``-like object (names, image, gradients, signs,
    dag, agd, dag_diff, agd_diff, gradient_norms; arrays (C, H, W)).

    First figure: the image and every member's gradient on one shared colour scale, so a member whose gradient
    is much larger (and so dominates D-AG) stands out. Second: per member its gradient sign and where the D-AG
    and A-GD directions differ from it (direction - sign, in {-2..2}), then the two ensemble directions.
    """
    grads = [
        (f"{name} (|g| {norm:.2g})", g) for name, norm, g in zip(views.names, views.gradient_norms, views.gradients)
    ]
    gradient_fig = image_grid([("image", "pixels", [("clean", views.image)]), ("gradients", "signed", grads)])
    rows = [
        (
            name,
            "signed",
            [("sign", views.signs[i]), ("D-AG - sign", views.dag_diff[i]), ("A-GD - sign", views.agd_diff[i])],
        )
        for i, name in enumerate(views.names)
    ]
    rows.append(("ensemble", "signed", [("D-AG direction", views.dag), ("A-GD direction", views.agd)]))
    return gradient_fig, image_grid(rows, signed_limit=2.0)


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
    fig = go.Figure(
        go.Bar(
            x=list(df["model"]),
            y=df["accuracy"],
            text=texts,
            textposition="outside",
            marker_color=colors,
            name="accuracy under attack",
            hovertemplate="%{x}<br>accuracy under attack %{y:.1%}<extra></extra>",
        )
    )
    base_layout(fig)
    fig.update_layout(
        xaxis_title="model",
        yaxis_title="accuracy under attack",
        yaxis_tickformat=".0%",
        yaxis_range=[0, 1.15],
        height=400,
        margin=dict(l=60, r=20, t=40, b=60),
    )
    return fig


def robustness_ratio_text(ensemble_acc: float, member_acc: float) -> str:
    """'2.5x' = the ensemble's accuracy under attack divided by the member's ('inf' when the member has none)."""
    if not np.isfinite(ensemble_acc) or not np.isfinite(member_acc):
        return "n/a"
    if member_acc <= 0:
        return "inf x" if ensemble_acc > 0 else "1.00x"
    return f"{ensemble_acc / member_acc:.2f}x"


def growth_figure(df: pd.DataFrame, attack_label: str = "under attack") -> go.Figure:
    """Robustness as the ensemble grows (the paper's Fig. 9): clean accuracy and accuracy under attack over size.

    ``df``: size, members (shown on hover), clean_accuracy, accuracy (both in [0, 1]).
    """
    _require(df, ["size", "members", "clean_accuracy", "accuracy"], "growth_figure")
    data = df.sort_values("size")
    fig = go.Figure()
    for column, name, dash in (("clean_accuracy", "clean", "dot"), ("accuracy", attack_label, "solid")):
        fig.add_trace(
            go.Scatter(
                x=data["size"],
                y=data[column],
                mode="lines+markers",
                name=name,
                line=dict(dash=dash),
                customdata=data["members"],
                hovertemplate="%{customdata}<br>size %{x}<br>%{y:.1%}<extra>%{fullData.name}</extra>",
            )
        )
    base_layout(fig)
    fig.update_layout(
        xaxis_title="ensemble size",
        yaxis_title="accuracy",
        yaxis_tickformat=".0%",
        yaxis_range=[0, 1.05],
        xaxis_dtick=1,
        legend_title_text="",
        height=380,
        margin=dict(l=60, r=20, t=40, b=50),
    )
    return fig
