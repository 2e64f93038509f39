"""Figures for decision-boundary slices: class maps side by side, and image thumbnails for the gallery.

Pure functions over plain arrays (numpy or CPU tensors): a class map is an (H, W) array of class indices
over the grid ``x_offsets`` x ``y_offsets`` around one image, which sits at offset (0, 0).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image, ImageColor, ImageDraw
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from trend_core.errors import TrendError
from trend_core.plots import _as_display, base_layout

if TYPE_CHECKING:  # (the slice type only; plots sit above the experiments that compute it)
    from trend_core.experiments.boundary import BoundarySlice

PALETTE = tuple(qualitative.Plotly) + tuple(qualitative.Alphabet)
X_AXIS_LABEL = "adversarial gradient direction"
Y_AXIS_LABEL = "random orthogonal direction"


def class_color(index: int) -> str:
    """The colour of class ``index`` (the same in every map and legend)."""
    return PALETTE[int(index) % len(PALETTE)]


def discrete_colorscale(num_classes: int) -> list[list]:
    """A stepwise colorscale giving each integer 0..num_classes-1 one flat colour (use zmin=-0.5, zmax=n-0.5)."""
    n = max(1, int(num_classes))
    scale = []
    for i in range(n):
        scale.append([i / n, class_color(i)])
        scale.append([(i + 1) / n, class_color(i)])
    return scale


LEGEND_PER_ROW = 8  # legend entries per row below the class maps


def class_map_figure(
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    x_offsets: Sequence[float],
    y_offsets: Sequence[float],
    class_names: Sequence[str],
    x_label: str = X_AXIS_LABEL,
    y_label: str = Y_AXIS_LABEL,
) -> go.Figure:
    """Side-by-side class maps (one per model) coloured by class, the image at the centre marked by a cross.

    ``maps[i]`` has shape (len(y_offsets), len(x_offsets)); the legend lists the classes present.
    """
    if len(maps) != len(titles):
        raise ValueError(f"{len(maps)} maps but {len(titles)} titles")
    xs, ys = np.asarray(x_offsets, dtype=float), np.asarray(y_offsets, dtype=float)
    n_classes = len(class_names)
    fig = make_subplots(rows=1, cols=max(1, len(maps)), subplot_titles=list(titles), horizontal_spacing=0.08)
    present: set[int] = set()
    for col, grid in enumerate(maps, start=1):
        grid = np.asarray(grid, dtype=int)
        if grid.shape != (len(ys), len(xs)):
            raise ValueError(f"map {col} has shape {grid.shape}, expected {(len(ys), len(xs))}")
        present.update(int(c) for c in np.unique(grid))
        fig.add_trace(
            go.Heatmap(
                z=grid,
                x=xs,
                y=ys,
                zmin=-0.5,
                zmax=n_classes - 0.5,
                colorscale=discrete_colorscale(n_classes),
                showscale=False,
                name=titles[col - 1],
                text=np.asarray(class_names, dtype=object)[grid],
                hovertemplate="x %{x:.3f}<br>y %{y:.3f}<br>class %{text}<extra>%{fullData.name}</extra>",
            ),
            row=1,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=[0.0],
                y=[0.0],
                mode="markers",
                name="image",
                legendgroup="image",
                showlegend=col == 1,
                marker=dict(symbol="x", size=14, color="black", line=dict(width=2, color="white")),
                hovertemplate="the image (offset 0, 0)<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text=x_label, row=1, col=col)
        fig.update_yaxes(title_text=y_label if col == 1 else None, row=1, col=col)
    for cls in sorted(present):  # legend entries: heatmaps have none of their own
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=f"class {class_names[cls]}",
                marker=dict(symbol="square", size=12, color=class_color(cls)),
                legendgroup=f"class-{cls}",
                hoverinfo="skip",
            )
        )
    base_layout(fig)
    # the legend goes below the maps in rows (a column beside them is cut off once it is taller than the maps);
    # the figure grows by one legend row per LEGEND_PER_ROW entries so nothing is clipped
    legend_rows = math.ceil((len(present) + 1) / LEGEND_PER_ROW)
    fig.update_layout(
        height=420 + 26 * legend_rows,
        margin=dict(l=60, r=20, t=60, b=70 + 26 * legend_rows),
        legend=dict(title_text="class", orientation="h", yanchor="top", x=0, xanchor="left", y=-0.22),
    )  # plot area 290 px: the top of the legend 64 px below it
    return fig


def grid_frame(
    classes: dict, x_offsets: Sequence[float], y_offsets: Sequence[float], class_names: Sequence[str]
) -> pd.DataFrame:
    """Every grid point of every model's class map as a row: model, x, y, class (for downloads)."""
    xs, ys = np.meshgrid(np.asarray(x_offsets, dtype=float), np.asarray(y_offsets, dtype=float))
    names = np.asarray(class_names, dtype=object)
    frames = [
        pd.DataFrame(
            {"model": model, "x": xs.ravel(), "y": ys.ravel(), "class": names[np.asarray(grid, dtype=int).ravel()]}
        )
        for model, grid in classes.items()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", "x", "y", "class"])


def to_display_image(image, scale: int = 8) -> np.ndarray:
    """A (C, H, W) or (H, W) image in [0, 1] as a uint8 array (H*scale, W*scale[, 3]) for ``st.image``."""
    arr = np.clip(_as_display(image), 0.0, 1.0)
    if scale > 1:
        arr = np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1)
    return (arr * 255 + 0.5).astype(np.uint8)


def gallery_images(images, scale: int = 8) -> list[np.ndarray]:
    """Thumbnails of a batch (N, C, H, W) in [0, 1], nearest-neighbour upscaled so 8x8 digits stay crisp."""
    return [to_display_image(img, scale) for img in images]


def class_map_image(boundary: BoundarySlice, cell_px: int = 8, gap_px: int = 6):
    """The class maps side by side as a PIL image: one flat colour per class (the dashboard's palette), rows
    top to bottom = +y to -y, the image's cell outlined in black."""
    if cell_px < 1 or gap_px < 0:
        raise TrendError("Cell size must be >= 1 pixel and the gap >= 0.")
    maps = [boundary.classes[n][::-1] for n in boundary.names]  # +y at the top
    rows, cols = maps[0].shape
    width = len(maps) * cols * cell_px + (len(maps) - 1) * gap_px
    canvas = Image.new("RGB", (width, rows * cell_px), "white")
    palette: dict[int, tuple[int, ...]] = {}
    for k, grid in enumerate(maps):
        left = k * (cols * cell_px + gap_px)
        rgb = np.zeros((rows, cols, 3), dtype=np.uint8)
        for cls in np.unique(grid):
            palette.setdefault(int(cls), ImageColor.getrgb(class_color(int(cls))))
            rgb[grid == cls] = palette[int(cls)]
        tile = Image.fromarray(rgb).resize((cols * cell_px, rows * cell_px), Image.Resampling.NEAREST)
        canvas.paste(tile, (left, 0))
        cx, cy = left + (cols // 2) * cell_px, (rows // 2) * cell_px
        ImageDraw.Draw(canvas).rectangle([cx, cy, cx + cell_px - 1, cy + cell_px - 1], outline="black")
    return canvas
