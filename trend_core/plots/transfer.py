"""Figures of transfer runs: the TM heatmap with row and column averages, the asymmetry TM - TM^T, and
example images (clean / adversarial / perturbation) of one source -> target pair.

Inputs are the plain frames a TransferResult gives: ``matrix`` = ``result.matrix()`` (rows = source, columns
= target, plus a ``row_avg`` column and a ``col_avg`` row) and ``pairs`` = ``result.long()`` (one row per
ordered pair with n_common, generated, transferred, tm, mean_l2, mean_linf).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from trend_core.plots import DIFF_COLORSCALE, TM_COLORSCALE, base_layout, image_grid, label_margin

ROW_AVG, COL_AVG = "row_avg", "col_avg"
HOVER_FIELDS = ["generated", "transferred", "n_common", "mean_l2", "mean_linf"]


def split_matrix(matrix: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series | None, pd.Series | None, float | None]:
    """(the source x target grid, row averages, column averages, overall mean) of ``result.matrix()``."""
    rows = [r for r in matrix.index if r != COL_AVG]
    cols = [c for c in matrix.columns if c != ROW_AVG]
    grid = matrix.loc[rows, cols]
    row_avg = matrix.loc[rows, ROW_AVG] if ROW_AVG in matrix.columns else None
    col_avg = matrix.loc[COL_AVG, cols] if COL_AVG in matrix.index else None
    corner = float(matrix.loc[COL_AVG, ROW_AVG]) if row_avg is not None and col_avg is not None else None
    return grid, row_avg, col_avg, corner


TEXT_MAX_CELLS = 20  # past this many rows or columns a TM matrix shows its values on hover only


def cell_font_size(n_cells: int) -> int | None:
    """Font size (px) of the values written in a heatmap of ``n_cells`` rows or columns, small enough that
    "0.14" fits its cell on a laptop-wide page; None past TEXT_MAX_CELLS (values on hover only)."""
    if n_cells > TEXT_MAX_CELLS:
        return None
    return 12 if n_cells <= 8 else 11 if n_cells <= 12 else 9


def _cell_text(values: np.ndarray) -> list[list[str]]:
    return [
        ["" if (v is None or (isinstance(v, float) and math.isnan(v))) else f"{v:.2f}" for v in row] for row in values
    ]


def _hover_data(pairs: pd.DataFrame | None, sources: Sequence[str], targets: Sequence[str]) -> np.ndarray | None:
    if pairs is None:
        return None
    table = pairs.set_index(["source", "target"])
    data = np.full((len(sources), len(targets), len(HOVER_FIELDS)), np.nan)
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            if (s, t) in table.index:
                data[i, j] = table.loc[(s, t), HOVER_FIELDS].to_numpy(dtype=float)
    return data


def tm_heatmap(matrix: pd.DataFrame, pairs: pd.DataFrame | None = None, title: str | None = None) -> go.Figure:
    """The TM matrix (rows = source, columns = target; model names on the axes) with the row averages in a
    column to its right and the column averages in a row below it; hover shows counts and norms."""
    grid, row_avg, col_avg, corner = split_matrix(matrix)
    sources, targets = [str(s) for s in grid.index], [str(t) for t in grid.columns]
    z = grid.to_numpy(dtype=float)
    custom = _hover_data(pairs, sources, targets)
    n_s, n_t = len(sources), len(targets)
    side = max(1.0, 0.12 * n_t)  # width of the averages column in cell units (readable, not dominant)
    fig = make_subplots(
        rows=2,
        cols=2,
        shared_xaxes=True,
        shared_yaxes=True,
        column_widths=[n_t, side],
        row_heights=[n_s, max(1.0, 0.12 * n_s)],
        horizontal_spacing=0.02,
        vertical_spacing=0.03,
    )
    font = cell_font_size(max(n_s, n_t))
    common = dict(
        colorscale=TM_COLORSCALE, zmin=0, zmax=1, texttemplate="%{text}" if font else "", textfont=dict(size=font or 12)
    )
    hover = (
        "source %{y}<br>target %{x}<br>TM %{z:.3f}"
        + (
            "<br>transferred %{customdata[1]:.0f} of %{customdata[0]:.0f} generated"
            "<br>both correct on %{customdata[2]:.0f} images"
            "<br>mean L2 %{customdata[3]:.3f}, mean L-inf %{customdata[4]:.3f}"
            if custom is not None
            else ""
        )
        + "<extra></extra>"
    )
    fig.add_trace(
        go.Heatmap(
            z=z,
            x=targets,
            y=sources,
            text=_cell_text(z),
            customdata=custom,
            hovertemplate=hover,
            name="TM",
            colorbar=dict(title="TM", thickness=14, len=0.8, y=0.55),
            **common,
        ),
        row=1,
        col=1,
    )
    avg_label_row, avg_label_col = "row average", "column average"
    if row_avg is not None:
        values = row_avg.to_numpy(dtype=float).reshape(-1, 1)
        fig.add_trace(
            go.Heatmap(
                z=values,
                x=[avg_label_row],
                y=sources,
                text=_cell_text(values),
                showscale=False,
                hovertemplate="source %{y}<br>average TM to the other targets %{z:.3f}"
                "<br>(higher: a better source for the attacker)<extra></extra>",
                name=avg_label_row,
                **common,
            ),
            row=1,
            col=2,
        )
    if col_avg is not None:
        values = col_avg.to_numpy(dtype=float).reshape(1, -1)
        fig.add_trace(
            go.Heatmap(
                z=values,
                x=targets,
                y=[avg_label_col],
                text=_cell_text(values),
                showscale=False,
                hovertemplate="target %{x}<br>average TM from the other sources %{z:.3f}"
                "<br>(lower: a safer target for the defender)<extra></extra>",
                name=avg_label_col,
                **common,
            ),
            row=2,
            col=1,
        )
    if corner is not None:
        values = np.array([[corner]])
        fig.add_trace(
            go.Heatmap(
                z=values,
                x=[avg_label_row],
                y=[avg_label_col],
                text=_cell_text(values),
                showscale=False,
                hovertemplate="mean off-diagonal TM %{z:.3f}<extra></extra>",
                name="overall",
                **common,
            ),
            row=2,
            col=2,
        )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="bottom", tickangle=-35 if max(map(len, targets), default=0) > 6 else 0)
    fig.update_yaxes(title_text="source (attacked model)", row=1, col=1)
    fig.update_xaxes(title_text="target (evaluated model)", row=2, col=1)
    cell = 46 if n_s <= 10 else 34 if n_s <= 20 else 24
    height = int(cell * (n_s + max(1.0, 0.12 * n_s)) + 190)
    base_layout(fig, title=title, height=max(360, height))
    fig.update_layout(
        margin=dict(l=label_margin(sources) + 30, r=20, t=60 if title else 30, b=label_margin(targets) + 30)
    )
    return fig


def asymmetry_matrix(matrix: pd.DataFrame) -> pd.DataFrame:
    """TM - TM^T over the models that are both source and target: entry (a, b) = TM(a -> b) - TM(b -> a)."""
    grid, _, _, _ = split_matrix(matrix)
    both = [m for m in grid.index if m in grid.columns]
    square = grid.loc[both, both].astype(float)
    return square - square.T.to_numpy()


def asymmetry_heatmap(matrix: pd.DataFrame, title: str | None = None) -> go.Figure:
    """TM(a -> b) - TM(b -> a) as a diverging heatmap (antisymmetric; red: a transfers more to b than back)."""
    grid, _, _, _ = split_matrix(matrix)
    diff = asymmetry_matrix(matrix)
    models = [str(m) for m in diff.index]
    z = diff.to_numpy(dtype=float)
    forward = grid.loc[diff.index, diff.columns].to_numpy(dtype=float)
    custom = np.stack([forward, forward.T], axis=-1) if len(models) else None
    limit = float(np.nanmax(np.abs(z))) if z.size and not np.all(np.isnan(z)) else 0.0
    limit = max(limit, 0.05)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=models,
            y=models,
            text=_cell_text(z),
            texttemplate="%{text}" if cell_font_size(len(models)) else "",
            textfont=dict(size=cell_font_size(len(models)) or 12),
            customdata=custom,
            colorscale=DIFF_COLORSCALE,
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorbar=dict(title="TM(a→b) −<br>TM(b→a)", thickness=14),
            hovertemplate="a = %{y}, b = %{x}<br>TM(a→b) %{customdata[0]:.3f}<br>TM(b→a) %{customdata[1]:.3f}"
            "<br>difference %{z:+.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category", title_text="a (source)")
    fig.update_xaxes(
        type="category", title_text="b (target)", tickangle=-35 if max(map(len, models), default=0) > 6 else 0
    )
    n = len(models)
    base_layout(fig, title=title, height=max(340, (46 if n <= 10 else 34 if n <= 20 else 24) * n + 170))
    fig.update_layout(
        margin=dict(l=label_margin(models) + 30, r=20, t=60 if title else 30, b=label_margin(models) + 30)
    )
    return fig


def pair_examples_figure(
    clean,
    adv,
    labels: Sequence[int],
    source_pred: Sequence[int],
    target_pred: Sequence[int],
    class_names: Sequence[str] | None = None,
    heading: str = "",
) -> go.Figure:
    """Columns of examples (clean image, adversarial image, perturbation adv - clean) with the true class and
    what the source and the target predict on the adversarial image."""
    names = list(class_names) if class_names else None

    def cls(i) -> str:
        i = int(i)
        return names[i] if names and i < len(names) else str(i)

    titles = [f"{cls(y)} → S:{cls(s)} T:{cls(t)}" for y, s, t in zip(labels, source_pred, target_pred)]
    clean_tiles = [(title, clean[i]) for i, title in enumerate(titles)]
    adv_tiles = [("", adv[i]) for i in range(len(titles))]
    delta_tiles = [
        ("", np.asarray(adv[i], dtype=np.float32) - np.asarray(clean[i], dtype=np.float32)) for i in range(len(titles))
    ]
    fig = image_grid(
        [
            ("clean", "pixels", clean_tiles),
            ("adversarial", "pixels", adv_tiles),
            ("perturbation", "signed", delta_tiles),
        ]
    )
    if heading:
        fig.update_layout(title=dict(text=heading, font_size=13), margin=dict(t=70))
    return fig
