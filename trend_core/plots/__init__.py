"""Plotly figure builders for the dashboard: pure functions over DataFrames and arrays, testable without a
browser. One module per page topic (zoo, transfer, boundary, ensemble, curve); shared pieces live here."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

TM_COLORSCALE = "Viridis"  # sequential, readable in grey, fine for colour-blind readers
DIFF_COLORSCALE = "RdBu_r"  # diverging around 0: red = row model transfers more
FONT = dict(family="Inter, Segoe UI, Helvetica, Arial, sans-serif", size=13)


def base_layout(fig: go.Figure, title: str | None = None, height: int | None = None) -> go.Figure:
    """The house style: white background, readable font, tight margins."""
    fig.update_layout(
        template="plotly_white", font=FONT, title=title, margin=dict(l=10, r=10, t=50 if title else 20, b=10)
    )
    if height is not None:
        fig.update_layout(height=height)
    return fig


def label_margin(labels: Sequence[str], font_px: int = 13) -> int:
    """Pixels a tick-label column needs so the longest label is not clipped."""
    longest = max((len(str(label)) for label in labels), default=4)
    return int(min(360, 20 + 0.62 * font_px * longest))


def _as_display(image) -> np.ndarray:
    """(C, H, W) or (H, W) array-like (numpy or CPU tensor) -> float32 (H, W) or (H, W, C)."""
    arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3):
        arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    return arr


def _tile(image, mode: str, name: str, limit: float):
    """One tile: 'pixels' ([0, 1], grey or RGB as is) or 'signed' (diverging around 0 within +-limit)."""
    arr = _as_display(image)
    if mode == "pixels":
        if arr.ndim == 2:
            return go.Heatmap(
                z=arr[::-1],
                zmin=0,
                zmax=1,
                colorscale="Greys_r",
                showscale=False,
                name=name,
                hovertemplate=f"{name}<br>pixel %{{z:.2f}}<extra></extra>",
            )
        return go.Image(z=(arr.clip(0, 1) * 255).astype(np.uint8), name=name)
    if arr.ndim == 3:  # colour perturbation: mid-grey = 0
        return go.Image(z=((arr / limit + 1) / 2 * 255).clip(0, 255).astype(np.uint8), name=name)
    return go.Heatmap(
        z=arr[::-1],
        zmin=-limit,
        zmax=limit,
        zmid=0,
        colorscale=DIFF_COLORSCALE,
        showscale=False,
        name=name,
        hovertemplate=f"{name}<br>change %{{z:+.3f}}<extra></extra>",
    )


def image_grid(
    rows: Sequence[tuple[str, str, Sequence[tuple[str, object]]]], tile_px: int = 110, signed_limit: float | None = None
) -> go.Figure:
    """A grid of image tiles with square pixels: ``rows`` = [(row label, 'pixels' | 'signed', [(title, image)])].

    'pixels' tiles show values in [0, 1] as they are; 'signed' tiles (perturbations) share one diverging
    scale, +-``signed_limit`` (default: the largest magnitude among them), so their sizes compare.
    """
    n_rows, n_cols = len(rows), max((len(tiles) for _, _, tiles in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        return base_layout(go.Figure(), height=120)
    if signed_limit is None:
        signed = [np.abs(_as_display(img)).max() for _, mode, tiles in rows if mode == "signed" for _, img in tiles]
        signed_limit = float(max(signed, default=0.0)) or 1.0
    titles = []
    for _, _, tiles in rows:
        titles += [title for title, _ in tiles] + [""] * (n_cols - len(tiles))
    fig = make_subplots(
        rows=n_rows,
        cols=n_cols,
        subplot_titles=titles,
        horizontal_spacing=0.015,
        vertical_spacing=min(0.1, 0.6 / n_rows),
        row_titles=[label for label, _, _ in rows],
    )
    for r, (label, mode, tiles) in enumerate(rows, start=1):
        for c, (title, image) in enumerate(tiles, start=1):
            fig.add_trace(_tile(image, mode, f"{label} {title}".strip(), signed_limit), row=r, col=c)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    for i in range(1, n_rows * n_cols + 1):
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_annotations(font_size=11)
    base_layout(fig, height=tile_px * n_rows + 70)
    fig.update_layout(showlegend=False, margin=dict(l=10, r=40, t=40, b=10))
    return fig
