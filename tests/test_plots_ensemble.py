"""Unit tests of the pure figure builders behind the boundary, ensemble-attack, TREND and TM-curve pages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trend_core.plots import boundary, curve, ensemble


# ----------------------------------------------------------------------------- boundary
def test_class_map_figure_colours_each_class_and_marks_the_centre():
    xs = np.linspace(-1, 1, 5)
    ys = np.linspace(-1, 1, 3)
    left = np.array([[3, 3, 3, 7, 7]] * 3)
    right = np.full((3, 5), 3)
    names = [f"digit {i}" for i in range(10)]
    fig = boundary.class_map_figure([left, right], ["FP-s0", "Q1-s0"], xs, ys, names)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert [h.name for h in heatmaps] == ["FP-s0", "Q1-s0"]
    assert np.array_equal(np.asarray(heatmaps[0].z), left)
    assert heatmaps[0].text[0][4] == "digit 7"  # hover shows the class name
    # every integer class maps to its own flat colour: zmin/zmax centre the steps on the integers
    assert (heatmaps[0].zmin, heatmaps[0].zmax) == (-0.5, 9.5)
    scale = heatmaps[0].colorscale
    assert scale[2 * 7][1] == scale[2 * 7 + 1][1] == boundary.class_color(7)
    legend = [t.name for t in fig.data if t.type == "scatter" and t.showlegend is not False]
    assert legend == ["image", "class digit 3", "class digit 7"]  # only classes present
    centres = [t for t in fig.data if t.name == "image"]
    assert len(centres) == 2 and all(tuple(t.x) == (0.0,) and tuple(t.y) == (0.0,) for t in centres)
    assert [a.text for a in fig.layout.annotations] == ["FP-s0", "Q1-s0"]
    assert fig.layout.xaxis.title.text == boundary.X_AXIS_LABEL


def test_class_map_figure_rejects_a_map_of_the_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        boundary.class_map_figure([np.zeros((2, 2), int)], ["a"], [0, 1, 2], [0, 1], ["0", "1"])


def test_grid_frame_lists_every_point_with_its_class_name():
    grid = np.array([[0, 1, 1], [2, 2, 2]])
    frame = boundary.grid_frame({"FP-s0": grid}, [-1.0, 0.0, 1.0], [-0.5, 0.5], ["zero", "one", "two"])
    assert len(frame) == 6 and list(frame.columns) == ["model", "x", "y", "class"]
    row = frame[(frame["x"] == 1.0) & (frame["y"] == -0.5)].iloc[0]
    assert row["class"] == "one"  # row 0 of the map is the first y offset
    assert frame[frame["y"] == 0.5]["class"].tolist() == ["two"] * 3


def test_display_images_upscale_without_blurring():
    img = np.zeros((1, 2, 2), np.float32)
    img[0, 0, 1] = 1.0
    out = boundary.to_display_image(img, scale=3)
    assert out.shape == (6, 6) and out.dtype == np.uint8
    assert out[0:3, 3:6].min() == 255 and out[0:3, 0:3].max() == 0
    rgb = boundary.to_display_image(np.ones((3, 2, 2)) * 0.5, scale=1)
    assert rgb.shape == (2, 2, 3) and rgb[0, 0, 0] == 128
    assert len(boundary.gallery_images(np.zeros((4, 1, 8, 8)), scale=2)) == 4


# ----------------------------------------------------------------------------- ensemble attacks
def _success_frame() -> pd.DataFrame:
    rows = []
    for rule, base in (("agd", 0.5), ("dag", 0.3), ("ugd", 0.1), ("empir", 0.25)):
        for eps in (0.05, 0.1, 0.2):
            rows.append({"rule": rule, "eps": eps, "success_rate": min(1.0, base + eps)})
    return pd.DataFrame(rows)


def test_success_lines_one_line_per_rule_in_paper_order():
    fig = ensemble.success_lines_figure(_success_frame())
    assert [t.name for t in fig.data] == ["D-AG", "EMPIR", "U-GD", "A-GD"]
    agd = fig.data[3]
    assert list(agd.x) == [0.05, 0.1, 0.2] and list(agd.y) == pytest.approx([0.55, 0.6, 0.7])
    assert fig.layout.yaxis.title.text == ensemble.SUCCESS_LABEL


def test_success_bars_pick_the_nearest_measured_eps():
    fig = ensemble.success_bars_figure(_success_frame(), eps=0.09)
    (bars,) = fig.data
    assert list(bars.x) == ["D-AG", "EMPIR", "U-GD", "A-GD"]
    assert list(bars.y) == pytest.approx([0.4, 0.35, 0.2, 0.6])
    assert list(bars.text) == ["40.0%", "35.0%", "20.0%", "60.0%"]
    assert "0.1" in fig.layout.title.text


def test_agreement_figure_groups_by_member():
    df = pd.DataFrame(
        {
            "member": ["FP-s0", "Q1-s0", "FP-s0", "Q1-s0"],
            "rule": ["dag", "dag", "agd", "agd"],
            "agreement": [0.95, 0.55, 0.8, 0.75],
        }
    )
    fig = ensemble.agreement_figure(df)
    assert [t.name for t in fig.data] == ["D-AG", "A-GD"]
    assert list(fig.data[0].x) == ["FP-s0", "Q1-s0"] and list(fig.data[0].y) == [0.95, 0.55]
    assert fig.layout.barmode == "group"


def test_gradient_figures_share_one_scale_so_a_dominating_member_stands_out():
    from types import SimpleNamespace

    big = np.zeros((1, 4, 4))
    big[0, 0, 0], big[0, 3, 3] = -2.0, 1.0
    small = np.full((1, 4, 4), 0.01)
    signs = [np.sign(big), np.sign(small)]
    dag, agd = np.sign(big + small), np.ones((1, 4, 4))
    views = SimpleNamespace(
        names=["FP-s0", "Q1-s0"],
        image=np.full((1, 4, 4), 0.5),
        gradients=[big, small],
        gradient_norms=[2.24, 0.04],
        signs=signs,
        dag=dag,
        agd=agd,
        dag_diff=[dag - s for s in signs],
        agd_diff=[agd - s for s in signs],
    )
    grad_fig, dir_fig = ensemble.gradient_figures(views)
    heat = {t.name: t for t in grad_fig.data}
    assert set(heat) == {"image clean", "gradients FP-s0 (|g| 2.2)", "gradients Q1-s0 (|g| 0.04)"}
    for trace in (heat["gradients FP-s0 (|g| 2.2)"], heat["gradients Q1-s0 (|g| 0.04)"]):
        assert (trace.zmin, trace.zmax) == (-2.0, 2.0)  # one scale for every member's gradient
    assert np.asarray(heat["gradients FP-s0 (|g| 2.2)"].z)[-1, 0] == -2.0  # image row 0 drawn at the top
    names = [t.name for t in dir_fig.data]
    assert names == [
        "FP-s0 sign",
        "FP-s0 D-AG - sign",
        "FP-s0 A-GD - sign",
        "Q1-s0 sign",
        "Q1-s0 D-AG - sign",
        "Q1-s0 A-GD - sign",
        "ensemble D-AG direction",
        "ensemble A-GD direction",
    ]
    assert all((t.zmin, t.zmax) == (-2.0, 2.0) for t in dir_fig.data)
    q1_dag_diff = np.asarray(dir_fig.data[4].z)[::-1]
    assert np.array_equal(q1_dag_diff, (dag - signs[1])[0])  # D-AG follows FP: it disagrees with Q1 there
    assert {"FP-s0", "Q1-s0", "ensemble"} <= {a.text for a in dir_fig.layout.annotations}


def test_robustness_bars_label_the_ratio_against_each_member():
    df = pd.DataFrame({"model": ["ensemble", "FP-s0", "Q1-s0", "Q2-s0"], "accuracy": [0.6, 0.2, 0.0, 0.6]})
    fig = ensemble.robustness_bars_figure(df)
    assert list(fig.data[0].x) == ["ensemble", "FP-s0", "Q1-s0", "Q2-s0"]
    assert list(fig.data[0].text) == ["60.0%", "20.0% (3.00x)", "0.0% (inf x)", "60.0% (1.00x)"]
    assert ensemble.robustness_ratio_text(0.0, 0.0) == "1.00x"
    assert ensemble.robustness_ratio_text(float("nan"), 0.5) == "n/a"


def test_growth_figure_clean_and_attacked_accuracy_over_size():
    df = pd.DataFrame(
        {
            "size": [3, 1, 2],
            "members": ["FP + Q1 + Q2", "FP", "FP + Q1"],
            "clean_accuracy": [0.95, 0.9, 0.92],
            "accuracy": [0.4, 0.1, 0.3],
        }
    )
    fig = ensemble.growth_figure(df, "A-GD eps 0.1")
    assert [t.name for t in fig.data] == ["clean", "A-GD eps 0.1"]
    assert list(fig.data[1].x) == [1, 2, 3] and list(fig.data[1].y) == [0.1, 0.3, 0.4]
    assert list(fig.data[1].customdata) == ["FP", "FP + Q1", "FP + Q1 + Q2"]
    assert fig.layout.xaxis.title.text == "ensemble size"


# ----------------------------------------------------------------------------- TM(eps) curve
def test_tm_curve_figure_separates_fit_points_from_the_measured_sweep():
    eps = np.linspace(0.01, 0.3, 30)
    f_ss = 100 * (1 - np.exp(-20 * eps))
    f_st = 60 * (1 - np.exp(-10 * eps))
    dense = pd.DataFrame({"eps": eps, "f_st": f_st, "f_ss": f_ss, "tm": f_st / f_ss})
    measured = dense.iloc[::3].reset_index(drop=True)
    fit_eps = measured["eps"].iloc[[0, 3, 6, 9]].to_list()
    fig = curve.tm_curve_figure(dense, measured, fit_eps=fit_eps, title="FP-s0 -> Q1-s0")
    names = [t.name for t in fig.data]
    assert names[:3] == ["f_st fit", "f_ss fit", "TM fit"]
    assert {"TM measured", "TM fit points", "f_st fit points", "f_ss measured"} <= set(names)
    fit_points = next(t for t in fig.data if t.name == "TM fit points")
    assert list(fit_points.x) == pytest.approx(fit_eps)
    measured_points = next(t for t in fig.data if t.name == "TM measured")
    assert len(measured_points.x) == len(measured) - 4
    assert fig.layout.yaxis2.title.text == "TM = f_st / f_ss"
    assert fig.layout.title.text == "FP-s0 -> Q1-s0"


def test_tm_curve_figure_without_measurements_draws_only_the_fit():
    dense = pd.DataFrame({"eps": [0.1, 0.2], "f_st": [1.0, 2.0], "f_ss": [2.0, 4.0], "tm": [0.5, 0.5]})
    assert [t.name for t in curve.tm_curve_figure(dense).data] == ["f_st fit", "f_ss fit", "TM fit"]
    with pytest.raises(ValueError, match="tm"):
        curve.tm_curve_figure(dense.drop(columns="tm"))
