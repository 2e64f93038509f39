"""The Decision boundary page under AppTest: gallery, one or two models, class maps with model names and the
image at the centre, boundary distances, downloads; bad input becomes a message."""

from __future__ import annotations

import json

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


def test_an_imported_network_is_offered_and_mapped(zoo_home, digits, tmp_path, capsys):
    import shlex

    import torch
    from defender_support import linear_program

    from trend_core.cli import main
    from trend_core.models.zoo import Zoo
    from trend_core.runtime.jobs import get_manager

    program = linear_program(digits, tmp_path / "lin.pt2")
    Zoo(zoo_home).import_program("user/digits/lin", program)
    at = open_app(PAGE)
    assert "lin" in at.multiselect(key="db_models").options  # offered under its own name
    draw(at, models=("user/digits/lin", Q1))
    assert not texts(at.error)
    (fig,) = figures(at)
    maps = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert [m["name"] for m in maps] == ["lin", "Q1-s0"]
    x = digits.tensors("test", 4)[0]
    with torch.no_grad():
        expected = int(torch.export.load(str(program)).module()(x[3:4]).argmax())
    z = np.asarray(maps[0]["z"])
    assert z.shape == (21, 21) and z[10, 10] == expected  # the centre is the network's own clean prediction
    assert len(np.unique(z)) >= 2  # a boundary within the default range: the map is not one flat class
    (job,) = get_manager().jobs(kind="boundary")
    argv = shlex.split(job.meta["command"])[1:]
    assert argv[:3] == ["boundary", "--model", "user/digits/lin"]
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0  # the command the page echoes runs from a shell too
    assert [m["model"] for m in json.loads(capsys.readouterr().out)["models"]] == ["lin", "Q1-s0"]


def test_an_imported_dataset_and_its_network_on_the_page(empty_home, digits, tmp_path, monkeypatch):
    from defender_support import linear_program

    from trend_core.data.user import import_dataset
    from trend_core.models.zoo import Zoo

    monkeypatch.setenv("TREND_DATA", str(tmp_path / "data"))
    at = open_app()  # the sidebar is drawn before the dataset exists
    assert "my-digits" not in at.sidebar.selectbox(key="sb_dataset").options
    x, y = digits.tensors("test", 200)
    np.savez(tmp_path / "mine.npz", x=x.numpy(), y=y.numpy())
    import_dataset("my-digits", tmp_path / "mine.npz")
    at.run()
    assert "my-digits" in at.sidebar.selectbox(key="sb_dataset").options  # offered without restarting the dashboard
    at.sidebar.selectbox(key="sb_dataset").set_value("my-digits").run()
    at.switch_page(PAGE).run()
    assert_clean(at)
    (empty,) = texts(at.info)  # no network for it yet: import one (its models are not trained here)
    assert "import your networks for it (.pt2 files, as user/my-digits/<name>)" in empty, empty
    Zoo(empty_home).import_program("user/my-digits/pix", linear_program(digits, tmp_path / "pix.pt2"))
    at.run()
    assert at.multiselect(key="db_models").options == ["pix"]
    draw(at, models=("user/my-digits/pix",))
    assert not texts(at.error)
    (fig,) = figures(at)
    (heatmap,) = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert heatmap["name"] == "pix" and np.asarray(heatmap["z"]).shape == (21, 21)
