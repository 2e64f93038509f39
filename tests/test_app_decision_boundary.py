"""The Decision boundary page under AppTest: gallery, one or two models, class maps with model names and the
image at the centre, boundary distances, downloads; bad input becomes a message."""

from __future__ import annotations

import numpy as np
from app_support import assert_clean, empty_home, figures, open_app, sync_jobs, texts, zoo_home  # noqa: F401
from conftest import FP, Q1

PAGE = "pages/decision_boundary.py"


def test_empty_zoo_says_what_to_do_first(empty_home):
    at = open_app(PAGE)
    assert any("build the digits zoo on the Overview page" in m for m in texts(at.info))
    assert not at.get("plotly_chart") and not at.button


def draw(at, models=(FP, Q1), image=3, resolution=21, span=None):
    at.selectbox(key="db_image").set_value(image)
    at.multiselect(key="db_models").set_value(list(models))
    at.slider(key="db_resolution").set_value(resolution)
    if span is not None:
        at.slider(key="db_span").set_value(span)
    at.button(key="db_run").click().run()
    assert_clean(at)
    return at


def test_two_models_side_by_side_with_the_image_at_the_centre(zoo_home, digits, zoo_model):
    at = open_app(PAGE)
    x, y = digits.tensors("test", 24)
    assert len(at.get("image")) == 24  # the gallery of thumbnails
    assert at.selectbox(key="db_image").options == [f"#{i} (class {int(c)})" for i, c in enumerate(y)]
    draw(at)
    assert not texts(at.error)
    (fig,) = figures(at)
    maps = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert [m["name"] for m in maps] == ["FP-s0", "Q1-s0"]
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["FP-s0", "Q1-s0"]
    assert "FP-s0" in fig["layout"]["xaxis"]["title"]["text"]  # the x direction's model
    for trace, name in zip(maps, (FP, Q1)):
        z = np.asarray(trace["z"])
        assert z.shape == (21, 21)
        assert z[10, 10] == int(zoo_model(name)(x[3:4]).argmax())  # the centre is the clean prediction
        assert trace["x"][10] == 0.0 and trace["y"][10] == 0.0
    centres = [t for t in fig["data"] if t.get("name") == "image"]
    assert len(centres) == 2 and all(t["x"] == [0.0] and t["y"] == [0.0] for t in centres)
    assert any(t.get("name", "").startswith("class ") for t in fig["data"])  # legend with class names
    distances = at.dataframe[0].value
    assert list(distances["model"]) == ["FP-s0", "Q1-s0"]
    assert {"+x", "-x", "+y", "-y", "prediction"} <= set(distances.columns)
    assert len(at.get("download_button")) == 4


def test_bad_input_becomes_a_message(zoo_home):
    at = open_app(PAGE)
    draw(at, models=())
    assert any("Pick at least one model" in m for m in texts(at.error))
    assert not at.get("plotly_chart")
    draw(at, span=0.0)
    assert any("span must be a positive number" in m for m in texts(at.error))
    assert not at.get("plotly_chart")
