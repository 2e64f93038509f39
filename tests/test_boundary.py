"""Decision-boundary slices: the centre is the clean prediction, distances match a known linear boundary, axes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import FP, Q1

from trend_core.attacks.base import predict
from trend_core.errors import TrendError
from trend_core.experiments.boundary import decision_boundary
from trend_core.plots.boundary import class_map_image


class Linear2(nn.Module):
    """Two classes split by the hyperplane w.x = c: class 1 where w.x > c."""

    def __init__(self, w: torch.Tensor, c: float):
        super().__init__()
        self.w, self.c = nn.Parameter(w.flatten()), c

    def forward(self, x):
        score = x.flatten(1) @ self.w - self.c
        return torch.stack([-score, score], dim=1)


def test_centre_cell_is_the_clean_prediction_of_every_model(zoo_model, digits):
    models = [zoo_model(FP), zoo_model(Q1)]
    x, y = digits.tensors("test", limit=6)
    for i in (0, 5):
        sl = decision_boundary(models, x[i], int(y[i]), resolution=11, seed=0)
        assert sl.names == ["FP-s0", "Q1-s0"] and sl.reference == "FP-s0"
        for name, model in zip(sl.names, models):
            clean = int(predict(model, x[i : i + 1])[0])
            assert sl.centre_class(name) == clean == sl.clean_pred[name]
            assert sl.classes[name].shape == (11, 11)
        assert sl.x_offsets[5] == 0.0 and sl.y_offsets[5] == 0.0
        assert sl.x_offsets[-1] == pytest.approx(2 * 0.1 * 8)  # default span: 2 eps sqrt(64 pixels)


def test_axes_are_unit_orthogonal_and_the_y_axis_is_seeded(zoo_model, digits):
    x, y = digits.tensors("test", limit=1)
    a = decision_boundary(zoo_model(FP), x[0], int(y[0]), resolution=5, seed=1)
    b = decision_boundary(zoo_model(FP), x[0], int(y[0]), resolution=5, seed=1)
    c = decision_boundary(zoo_model(FP), x[0], int(y[0]), resolution=5, seed=2)
    u, v = a.x_direction.ravel(), a.y_direction.ravel()
    assert np.linalg.norm(u) == pytest.approx(1, abs=1e-5) and np.linalg.norm(v) == pytest.approx(1, abs=1e-5)
    assert abs(u @ v) < 1e-5
    # the gradient's float sums may differ in the last bit between runs and thread counts: compare with a margin
    assert np.allclose(a.y_direction, b.y_direction, atol=1e-5) and not np.allclose(
        a.y_direction, c.y_direction, atol=1e-2
    )
    assert np.allclose(a.x_direction, c.x_direction, atol=1e-5)


def test_distances_match_a_known_linear_boundary():
    w = torch.tensor([0.6, -0.2, 0.5, 0.3])
    image = torch.full((1, 2, 2), 0.5)
    model = Linear2(w, c=float(w @ image.flatten()) + 0.3)  # the image is class 0, 0.3 / |w| from the boundary
    sl = decision_boundary(model, image, 0, span=1.0, resolution=201, names=["lin"])
    exact = 0.3 / float(w.norm())
    step = 1.0 / 100
    # the gradient of the loss of class 0 points towards class 1: the boundary lies along +x
    assert sl.distances["lin"]["+x"] == pytest.approx(exact, abs=step)
    assert sl.distances["lin"]["+x"] >= exact - 1e-6
    assert sl.distances["lin"]["-x"] is None  # moving away from the boundary never crosses it
    frame = sl.distance_frame()
    assert list(frame.columns) == ["clean_pred", "+x", "-x", "+y", "-y"] and frame.at["lin", "clean_pred"] == 0
    grid = sl.classes["lin"]
    assert (grid[100, :100] == 0).all() and grid[100, -1] == 1


def test_png_of_the_class_maps(zoo_model, digits):
    x, y = digits.tensors("test", limit=1)
    sl = decision_boundary([zoo_model(FP), zoo_model(Q1)], x[0], int(y[0]), resolution=9)
    image = class_map_image(sl, cell_px=4, gap_px=2)
    assert image.size == (2 * 9 * 4 + 2, 9 * 4)
    centre = image.getpixel((4 * 4 + 1, 4 * 4 + 1))
    from PIL import ImageColor

    from trend_core.plots.boundary import class_color

    assert centre == ImageColor.getrgb(class_color(sl.centre_class("FP-s0")))


def test_bad_requests(zoo_model, digits):
    model = zoo_model(FP)
    x, y = digits.tensors("test", limit=2)
    for kwargs, message in [
        (dict(resolution=10), "odd"),
        (dict(resolution=1), "odd"),
        (dict(span=-1.0), "span"),
        (dict(reference=3), "reference"),
    ]:
        with pytest.raises(TrendError, match=message):
            decision_boundary(model, x[0], int(y[0]), **kwargs)
    with pytest.raises(TrendError, match="one"):
        decision_boundary(model, x, y)
    with pytest.raises(TrendError):
        decision_boundary([], x[0], 0)
    with pytest.raises(TrendError, match="span"):
        decision_boundary(Linear2(torch.ones(4), 0.0), torch.zeros(1, 2, 2), 0)  # no spec: no default span
    with pytest.raises(TrendError, match="gradient is zero"):
        decision_boundary(Linear2(torch.zeros(4), 0.0), torch.zeros(1, 2, 2), 0, span=1.0)
