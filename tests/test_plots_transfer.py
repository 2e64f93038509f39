"""Figure builders for the zoo and transfer views, checked on hand-made frames (no browser, no models)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from trend_core.experiments.transfer_result import PAIR_COLUMNS, TransferResult
from trend_core.plots import image_grid
from trend_core.plots.transfer import (
    asymmetry_heatmap,
    asymmetry_matrix,
    pair_examples_figure,
    split_matrix,
    tm_heatmap,
)
from trend_core.plots.zoo import accuracy_figure

MODELS = ["FP-s0", "Q2-s0", "FP-VGG11BN-s0"]
TM = {
    ("FP-s0", "Q2-s0"): 0.8,
    ("FP-s0", "FP-VGG11BN-s0"): 0.5,
    ("Q2-s0", "FP-s0"): 0.3,
    ("Q2-s0", "FP-VGG11BN-s0"): float("nan"),
    ("FP-VGG11BN-s0", "FP-s0"): 0.9,
    ("FP-VGG11BN-s0", "Q2-s0"): 0.2,
}


def make_result(sources=MODELS, targets=MODELS) -> TransferResult:
    rows = []
    for s in sources:
        for t in targets:
            tm = 1.0 if s == t else TM[(s, t)]
            generated = 0 if math.isnan(tm) else 50
            rows.append(
                {
                    "source": s,
                    "target": t,
                    "n_common": 90,
                    "generated": generated,
                    "transferred": 0 if math.isnan(tm) else round(tm * generated),
                    "tm": tm,
                    "mean_l2": 0.4 + 0.1 * len(s),
                    "mean_linf": 0.1,
                }
            )
    return TransferResult(pd.DataFrame(rows, columns=PAIR_COLUMNS), list(sources), list(targets), "pgd", 0.1)


def linked(layout, a: str, b: str) -> bool:
    """Whether axes ``a`` and ``b`` (trace names like 'x', 'x3') are linked by plotly's ``matches``."""
    full = lambda axis: axis[0] + "axis" + axis[1:]  # noqa: E731  'x3' -> 'xaxis3'
    return layout[full(a)].matches == b or layout[full(b)].matches == a


def traces(fig) -> dict:
    return {trace.name: trace for trace in fig.data}


def test_heatmap_axes_are_model_names_and_averages_sit_beside_it():
    result = make_result()
    fig = tm_heatmap(result.matrix(), result.long())
    t = traces(fig)
    assert list(t["TM"].x) == MODELS and list(t["TM"].y) == MODELS
    np.testing.assert_allclose(t["TM"].z, result.matrix(averages=False).to_numpy(), equal_nan=True)
    row_avg = result.matrix()["row_avg"].iloc[:3].to_numpy()
    np.testing.assert_allclose(np.asarray(t["row average"].z).ravel(), row_avg)
    assert row_avg[0] == pytest.approx(0.65)  # FP-s0 -> (0.8 + 0.5) / 2, the diagonal left out
    np.testing.assert_allclose(np.asarray(t["column average"].z).ravel(), [0.6, 0.5, 0.5])  # NaN cell skipped
    assert list(t["row average"].y) == MODELS and list(t["column average"].x) == MODELS
    # the averages share the heatmap's axes: the same model order, cell for cell
    assert linked(fig.layout, t["TM"].xaxis, t["column average"].xaxis)
    assert linked(fig.layout, t["TM"].yaxis, t["row average"].yaxis)
    assert t["overall"].z[0][0] == pytest.approx(np.nanmean([0.8, 0.5, 0.3, 0.9, 0.2]))
    assert t["TM"].text[1][2] == "" and t["TM"].text[0][1] == "0.80"  # NaN cells stay blank
    assert t["TM"].zmin == 0 and t["TM"].zmax == 1


def test_heatmap_hover_carries_counts_and_norms_per_cell():
    result = make_result()
    t = traces(tm_heatmap(result.matrix(), result.long()))["TM"]
    generated, transferred, common, l2, linf = t.customdata[0][1]  # FP-s0 -> Q2-s0
    assert (generated, transferred, common) == (50, 40, 90)
    assert l2 == pytest.approx(0.4 + 0.1 * len("FP-s0")) and linf == pytest.approx(0.1)
    for word in ("transferred", "generated", "L2", "L-inf"):
        assert word in t.hovertemplate


def test_heatmap_without_averages_or_pairs_still_draws():
    result = make_result()
    fig = tm_heatmap(result.matrix(averages=False))
    assert set(traces(fig)) == {"TM"} and fig.data[0].customdata is None


def test_margins_fit_the_longest_label():
    long_names = ["digits/resnet18-w0.25/FP/sgd/s0", "digits/resnet18-w0.25/Q2/sgd/s0"]
    result = make_result()
    matrix = result.matrix().rename(index=dict(zip(MODELS, long_names)), columns=dict(zip(MODELS, long_names)))
    fig = tm_heatmap(matrix)
    assert fig.layout.margin.l > 0.5 * 13 * len(long_names[0])


def test_asymmetry_is_antisymmetric_over_models_both_source_and_target():
    result = make_result(sources=MODELS, targets=MODELS[:2])
    diff = asymmetry_matrix(result.matrix())
    assert list(diff.index) == MODELS[:2] and list(diff.columns) == MODELS[:2]
    assert diff.loc["FP-s0", "Q2-s0"] == pytest.approx(0.5) and diff.loc["Q2-s0", "FP-s0"] == pytest.approx(-0.5)
    fig = asymmetry_heatmap(result.matrix())
    z = np.asarray(fig.data[0].z)
    np.testing.assert_allclose(z, -z.T)
    assert fig.data[0].zmid == 0 and list(fig.data[0].x) == MODELS[:2]
    assert fig.data[0].customdata[0][1][0] == pytest.approx(0.8)  # TM(a -> b) for the hover
    assert fig.data[0].customdata[0][1][1] == pytest.approx(0.3)  # TM(b -> a)


def test_split_matrix_returns_the_grid_and_the_averages():
    grid, row_avg, col_avg, corner = split_matrix(make_result().matrix())
    assert grid.shape == (3, 3) and list(row_avg.index) == MODELS and list(col_avg.index) == MODELS
    assert corner == pytest.approx(np.nanmean([0.8, 0.5, 0.3, 0.9, 0.2]))


def test_example_images_show_clean_adversarial_and_a_shared_perturbation_scale():
    rng = np.random.default_rng(0)
    clean = rng.random((2, 1, 8, 8)).astype(np.float32)
    delta = np.zeros_like(clean)
    delta[0, 0, 0, 0], delta[1, 0, 1, 1] = 0.1, -0.05
    fig = pair_examples_figure(clean, clean + delta, [3, 5], [8, 6], [8, 5], [str(i) for i in range(10)])
    names = [t.name for t in fig.data]
    assert names[:2] == ["clean 3 → S:8 T:8", "clean 5 → S:6 T:5"] and len(names) == 6
    perturbation = [t for t in fig.data if t.name.startswith("perturbation")]
    assert all(t.zmin == pytest.approx(-0.1) and t.zmax == pytest.approx(0.1) for t in perturbation)
    np.testing.assert_allclose(np.asarray(perturbation[0].z)[::-1], delta[0, 0], atol=1e-6)  # top row first
    clean_tiles = [t for t in fig.data if t.name.startswith("clean")]
    assert all(t.zmin == 0 and t.zmax == 1 for t in clean_tiles)
    np.testing.assert_allclose(np.asarray(clean_tiles[1].z)[::-1], clean[1, 0])


def test_image_grid_draws_rgb_tiles_as_images_and_handles_empty_input():
    rgb = np.full((3, 4, 4), 0.5, dtype=np.float32)
    fig = image_grid([("clean", "pixels", [("a", rgb)]), ("delta", "signed", [("", rgb - 0.5)])])
    assert [t.type for t in fig.data] == ["image", "image"]
    assert np.asarray(fig.data[0].z)[0, 0].tolist() == [127, 127, 127]
    assert np.asarray(fig.data[1].z)[0, 0].tolist() == [127, 127, 127]  # zero change: mid grey
    assert len(image_grid([]).data) == 0


def test_accuracy_bars_are_labelled_with_model_names_and_sorted():
    frame = pd.DataFrame(
        {
            "label": ["FP-s0", "Q1-s0", "Q2-s0"],
            "test acc %": [96.0, 91.5, None],
            "input": ["FP", "Q1", "Q2"],
            "name": ["a", "b", "c"],
        }
    )
    fig = accuracy_figure(frame)
    ys = [y for trace in fig.data for y in trace.y]
    xs = [x for trace in fig.data for x in trace.x]
    assert sorted(zip(xs, ys)) == [(91.5, "Q1-s0"), (96.0, "FP-s0")]  # the model without accuracy is left out
    assert fig.layout.xaxis.range[1] > 100 >= max(xs)
    assert len(accuracy_figure(frame.iloc[2:]).data) == 0
