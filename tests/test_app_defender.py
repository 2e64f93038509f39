"""The dashboard's defender path under AppTest (#21): a .pt2 network uploaded on the Model zoo page joins the pickers
as user/<dataset>/<name> (a bad file, name or normalization is one sentence, nothing imported); on the TREND
builder the chosen vote of imported networks is exported with its robustness card (three download buttons); the
Overview links the path."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from app_support import assert_clean, empty_home, open_app, sync_jobs, texts  # noqa: F401
from defender_support import linear_program

NAMES = ("user/digits/lin-a", "user/digits/lin-b")


def _program_bytes(digits, seed: int, epochs: int) -> bytes:
    """A linear digits classifier on pixels, trained for a moment and exported as a .pt2 archive."""
    with tempfile.TemporaryDirectory() as folder:
        return linear_program(digits, Path(folder) / "net.pt2", seed, epochs).read_bytes()


@pytest.fixture(scope="module")
def programs(digits) -> list[bytes]:
    return [_program_bytes(digits, 0, 40), _program_bytes(digits, 1, 60)]


def _upload(at, name: str, data: bytes, file: str = "net.pt2"):
    at.text_input(key="zoo_net_name").set_value(name)
    at.file_uploader(key="zoo_net_file").set_value((file, data, "application/octet-stream")).run()
    at.button(key="zoo_net_go").click().run()
    assert_clean(at)
    return at


def test_a_network_upload_is_refused_in_one_sentence_or_joins_the_pickers(empty_home, programs):
    from trend_core.models.zoo import Zoo

    at = open_app("pages/model_zoo.py")
    _upload(at, "lin-a", b"just some text", "notes.pt2")
    (error,) = texts(at.error)
    assert error.startswith("notes.pt2 is not a torch.export program") and "trend-upload" not in error, error
    _upload(at, "Lin A", programs[0])
    (error,) = texts(at.error)
    assert "must be 1-40 lowercase letters" in error, error
    at.radio(key="zoo_net_expects").set_value("normalized").run()
    _upload(at, "lin-a", programs[0])
    (error,) = texts(at.error)
    assert "needs its mean and std" in error, error
    assert not Zoo(empty_home).list(imported_networks=True)  # nothing was imported by a refusal

    at.radio(key="zoo_net_expects").set_value("pixels").run()
    _upload(at, "lin-a", programs[0], "a.pt2")
    (message,) = texts(at.success)
    assert message.startswith("Imported user/digits/lin-a: test accuracy"), message
    assert not texts(at.error)
    at.run()  # the table drawn before the import shows it on the next run
    labels = list(at.dataframe[0].value["label"])
    assert labels == ["lin-a"]  # the zoo table lists it under its own name
    at.switch_page("pages/audit.py").run()
    assert_clean(at)
    options = [o for box in at.multiselect for o in box.options] + [o for box in at.selectbox for o in box.options]
    assert "lin-a" in options  # the pickers offer it


def test_the_overview_shows_the_defender_path(empty_home):
    at = open_app()
    assert any("Defender: import → matrix → choose → audit → export" in m for m in texts(at.markdown))


@pytest.fixture
def defender_home(empty_home, programs, tmp_path):
    from trend_core.models.zoo import Zoo

    zoo = Zoo(empty_home)
    for name, data in zip(NAMES, programs):
        path = tmp_path / f"{name.split('/')[-1]}.pt2"
        path.write_bytes(data)
        zoo.import_program(name, path)
    return empty_home


def test_the_builder_exports_the_chosen_vote_with_its_card(defender_home):
    at = open_app("pages/trend_builder.py")
    at.multiselect(key="tb_pool").set_value(list(NAMES))
    at.number_input(key="tb_pool_steps").set_value(3)
    at.number_input(key="tb_pool_limit").set_value(16)
    at.button(key="tb_launch").click().run()
    assert_clean(at)
    at.number_input(key="tb_steps").set_value(3)
    at.number_input(key="tb_limit").set_value(12).run()
    assert "5. Export the ensemble" in [h.value for h in at.subheader]
    assert not at.get("download_button") or all("ensemble.pt2" not in b.proto.label for b in at.get("download_button"))
    at.button(key="tb_export").click().run()
    assert_clean(at)
    assert not texts(at.error)
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"Download ensemble.pt2", "Download card.html", "Download card.json"} <= set(labels), labels
    assert any("Robustness card" in m and "audit worst case" in m for m in texts(at.markdown))
    from trend_core.runtime.jobs import get_manager

    (job,) = get_manager().jobs(kind="ensemble-export")
    card = json.loads(Path(job.result["files"]["json"]).read_text())
    assert [m["name"] for m in card["members"]] == list(NAMES) and card["n_images"] == 12
    assert card["commands"][0].startswith("trend ensemble export --models user/digits/lin-a user/digits/lin-b")


def test_imported_networks_stay_in_the_default_candidate_pool():
    from trend_core.models.families import fully_trained

    demo = "digits/resnet18-w0.25/FP/sgd/s0/e4"
    names = [demo, *NAMES]
    metas = [{"name": demo}, *({"name": n, "origin": "imported"} for n in NAMES)]
    kept, left_out = fully_trained(names, metas)
    assert kept == list(NAMES) and set(left_out) == {demo}


def test_an_imported_dataset_asks_for_networks_and_takes_an_upload(empty_home, programs, digits, tmp_path, monkeypatch):
    import numpy as np

    from trend_core.data.user import import_dataset

    monkeypatch.setenv("TREND_DATA", str(tmp_path / "data"))
    x, y = digits.tensors("test", 200)
    np.savez(tmp_path / "mine.npz", x=x.numpy(), y=y.numpy())
    import_dataset("my-digits", tmp_path / "mine.npz")
    at = open_app()
    at.sidebar.selectbox(key="sb_dataset").set_value("my-digits").run()
    assert_clean(at)
    (empty,) = texts(at.info)  # no starter zoo or training offered: its networks are imported
    assert "my-digits is data you imported, so import your networks for it (.pt2)" in empty, empty
    assert not [b for b in at.button if b.key in ("build_default_zoo", "build_demo_zoo")]
    at.switch_page("pages/transferability.py").run()
    assert any("import your networks for it (.pt2 files, as user/my-digits/<name>)" in m for m in texts(at.info))
    at.switch_page("pages/model_zoo.py").run()
    assert_clean(at)
    assert not texts(at.error)  # (the Train tab built model specs for a dataset no spec takes: an error)
    assert sum("its networks are imported, not trained here" in m for m in texts(at.info)) == 2  # Train, Upload
    _upload(at, "pix", programs[0])
    (message,) = texts(at.success)
    assert message.startswith("Imported user/my-digits/pix: test accuracy"), message
    at.run()
    assert list(at.dataframe[0].value["label"]) == ["pix"]
