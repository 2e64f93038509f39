"""The dashboard as a server others could reach: the store folder is a choice among the operator's homes
(never free text), an unusable one is one clear error, uploads over an existing model ask first, bad weights
are refused, and damaged zoo entries are named. Each page stays usable afterwards."""

from __future__ import annotations

import io

import tomllib
import torch
from app_support import assert_clean, empty_home, open_app, sync_jobs, texts, zoo_home  # noqa: F401
from conftest import FP, REPO

PAGE = "pages/model_zoo.py"


def test_server_config_listens_locally_without_statistics_and_caps_uploads():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False
    assert 45 <= config["server"]["maxUploadSize"] <= 200  # a full-width CIFAR ResNet18 (45 MB) fits


def test_store_folder_is_a_choice_among_the_operator_homes(zoo_home, tmp_path, monkeypatch):
    other = tmp_path / "other-home"
    monkeypatch.setenv("TREND_HOMES", str(other))
    at = open_app()
    assert not at.sidebar.text_input  # no free text without an operator root
    (box,) = [s for s in at.sidebar.selectbox if s.label == "Store folder"]
    assert box.options == [str(zoo_home), str(other)]
    box.set_value(str(other)).run()
    assert_clean(at)
    assert any(f"The zoo at {other} has no digits models" in m for m in texts(at.info))


def test_an_unusable_store_folder_is_one_error_and_another_can_be_picked(zoo_home, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("TREND_HOMES", str(blocker / "home"))
    at = open_app()
    (box,) = [s for s in at.sidebar.selectbox if s.label == "Store folder"]
    box.set_value(str(blocker / "home")).run()
    assert_clean(at)
    (error,) = texts(at.error)
    assert "cannot be used" in error and "is a file" in error and not at.dataframe
    box.set_value(str(zoo_home)).run()
    assert_clean(at)
    assert not at.error and len(at.dataframe[0].value) == 3


def test_new_store_folders_only_inside_the_operator_root(empty_home, tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    (root / "taken").write_text("a file, not a folder")
    monkeypatch.setenv("TREND_HOME_ROOT", str(root))
    at = open_app()
    for bad, words in (("../escape", "one plain name"), ("/etc", "one plain name"), ("taken", "cannot be used")):
        at.sidebar.text_input[0].set_value(bad).run()
        assert_clean(at)
        assert any(words in e for e in texts(at.sidebar.error)), (bad, texts(at.sidebar.error))
    assert not (tmp_path / "escape").exists()
    at.sidebar.text_input[0].set_value("team-a").run()
    assert_clean(at)
    (box,) = [s for s in at.sidebar.selectbox if s.label == "Store folder"]
    assert box.value == str(root / "team-a") and (root / "team-a").is_dir()


def _weights(state: dict, transform) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: transform(v.clone()) if v.is_floating_point() else v for k, v in state.items()}, buffer)
    return buffer.getvalue()


def test_upload_over_an_existing_model_asks_first_and_bad_weights_are_refused(zoo_home):
    from trend_core.models.zoo import Zoo

    state = Zoo(zoo_home).load(FP).state_dict()
    before = (zoo_home / "models").joinpath(f"{Zoo(zoo_home).metadata(FP)['key']}.safetensors").read_bytes()
    at = open_app(PAGE)
    at.text_input(key="zoo_up_name").set_value(FP)
    at.file_uploader(key="zoo_up_file").set_value(
        ("nan.pt", _weights(state, lambda v: v.fill_(float("nan"))), "application/octet-stream")
    ).run()
    assert at.button(key="zoo_up_go").disabled  # replacing needs the confirmation
    at.checkbox(key="zoo_up_replace").check().run()
    at.button(key="zoo_up_go").click().run()
    assert_clean(at)
    (error,) = texts(at.error)
    assert "non-finite" in error
    at.file_uploader(key="zoo_up_file").set_value(
        ("int8.pt", _weights(state, lambda v: v.to(torch.int8)), "application/octet-stream")
    ).run()
    at.button(key="zoo_up_go").click().run()
    assert_clean(at)
    assert any("int8" in e for e in texts(at.error))
    assert (zoo_home / "models").joinpath(f"{Zoo(zoo_home).metadata(FP)['key']}.safetensors").read_bytes() == before


def test_damaged_zoo_entries_are_named_on_the_model_zoo_page(zoo_home):
    from trend_core.config.specs import ModelSpec

    meta = zoo_home / "models" / f"{ModelSpec.parse(FP).key}.json"
    meta.write_text("{ not json")
    at = open_app(PAGE)
    (warning,) = texts(at.warning)
    assert "1 damaged or incomplete entry" in warning and "trend zoo clean" in warning
    assert FP not in list(at.dataframe[0].value["name"])  # the other models are still shown
