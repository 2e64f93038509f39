"""Plotly figures of a reproduction report, per stage; shared by the HTML report and the Reproduce page.

Pure functions of the report's data (no engine objects, no Streamlit).
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from trend_core.plots import base_layout
from trend_core.plots.boundary import class_map_figure
from trend_core.plots.curve import tm_curve_figure
from trend_core.plots.transfer import tm_heatmap
from trend_core.plots.zoo import accuracy_figure


def _bar(
    frame: pd.DataFrame, x: str, y: str, color: str | None, title: str, y_title: str, percent: bool = True
) -> go.Figure:
    fig = px.bar(frame, x=x, y=y, color=color, barmode="group", title=title)
    base_layout(fig, title=title, height=380)
    fig.update_layout(yaxis_title=y_title, yaxis_tickformat=".0%" if percent else None)
    return fig


def stage_figures(name: str, stage: dict, dataset: str = "digits") -> list[tuple[str, go.Figure]]:
    """(caption, figure) pairs of one stage's result (none for a stage that did not run)."""
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.plots.ensemble import (
        growth_figure,
        robustness_bars_figure,
        success_lines_figure,
    )
    from trend_core.reproduce.stages import tm_matrix, with_averages

    if not stage or stage.get("status") != "done":
        return []
    figs: list[tuple[str, go.Figure]] = []
    if name == "baseline":
        frame = stage["accuracy"].rename(columns={"model": "label", "test_acc_pct": "test acc %"})
        figs.append(("Clean test accuracy of every model", accuracy_figure(frame, color=None)))
    elif name == "attacks":
        table = stage["table"].assign(transfer=lambda d: d["transfer_pct_mean"] / 100)
        figs.append(
            (
                "Mean transfer rate per attack and relation (Tables II-III)",
                _bar(table, "attack", "transfer", "relation", "transfer rate by attack", "transferred / generated"),
            )
        )
    elif name == "matrices":
        pairs = stage["pairs"]
        for family, labels in [("all models", stage["labels"]), *stage["families"].items()]:
            sub = pairs[pairs["source"].isin(labels) & pairs["target"].isin(labels)]
            figs.append(
                (
                    f"TM matrix under PGD: {family}",
                    tm_heatmap(with_averages(tm_matrix(pairs, labels)), sub, title=f"TM: {family}"),
                )
            )
    elif name == "boundary":
        # local: loads torch only when needed (keeps start-up fast)
        from trend_core.config.datasets import get_info

        maps = [stage["classes"][n].numpy() for n in stage["names"]]
        figs.append(
            (
                f"Decision boundary around test image {stage['index']} (label {stage['label']})",
                class_map_figure(
                    maps, stage["names"], stage["x_offsets"], stage["y_offsets"], get_info(dataset).class_names
                ),
            )
        )
    elif name == "ensembles":
        for ensemble, part in stage["sweep"].groupby("ensemble", sort=False):
            fig = success_lines_figure(part)
            fig.update_layout(title=f"ensemble attacks on {ensemble}")
            figs.append((f"Attack success over eps on {ensemble}", fig))
        agreement = stage["agreement"].assign(rule=lambda d: d["rule"].str.upper())
        caption = (
            f"Gradient domination on {stage['domination_ensemble']} at eps {stage['domination_eps']:g}: how "
            "often each rule's step followed each member's gradient sign"
        )
        figs.append(
            (
                caption,
                _bar(agreement, "member", "agreement", "rule", "sign agreement with each member", "fraction of pixels"),
            )
        )
        figs.append(
            (
                "Mean input-gradient L2 norm of each member",
                _bar(
                    stage["gradients"],
                    "member",
                    "mean_grad_l2",
                    None,
                    "gradient norm per member",
                    "mean L2 norm",
                    percent=False,
                ),
            )
        )
    elif name == "trend":
        for ensemble, part in stage["comparison"].groupby("ensemble", sort=False):
            fig = robustness_bars_figure(part)
            fig.update_layout(title=f"{ensemble} under A-GD at eps {stage['eps']:g}")
            figs.append((f"TREND ensemble {ensemble} against each member alone", fig))
        figs.append(("Robustness as the ensemble grows", growth_figure(stage["growth"], "under A-GD")))
    elif name == "fit":
        for pair, curve in stage["curves"].groupby("pair", sort=False):
            measured = stage["measured"][stage["measured"]["pair"] == pair]
            fit_eps = list(measured.loc[measured["used_in_fit"], "eps"])
            figs.append(
                (
                    f"TM(eps) of {pair}: 4-point fit against the measured sweep",
                    tm_curve_figure(curve, measured, fit_eps, title=pair),
                )
            )
    elif name == "audit":
        worst = stage["worst_case"]
        figs.append(
            (
                "Worst-case accuracy over the audit's battery",
                _bar(worst, "model", "worst_case_accuracy", None, "audit worst case", "robust accuracy"),
            )
        )
    return figs


def report_figures(report: dict) -> dict[str, list[tuple[str, go.Figure]]]:
    """Every stage's figures, by stage name."""
    dataset = report["settings"]["dataset"]
    return {name: stage_figures(name, stage, dataset) for name, stage in report["stages"].items()}
