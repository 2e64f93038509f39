"""Imported networks (user/<dataset>/<name>, #21) in `trend eval`, `trend fit-tm` and `trend boundary`: loaded as
the zoo keeps them, never trained; a missing one is one sentence and exit status 2, before any zoo model trains."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import FP
from defender_support import copy_zoo_model, linear_program
from PIL import Image

from trend_core.cli import main
from trend_core.models.zoo import Zoo

LIN, OTHER = "user/digits/lin", "user/digits/other"


@pytest.fixture(scope="module")
def program_files(tmp_path_factory, digits):
    folder = tmp_path_factory.mktemp("programs")
    return [linear_program(digits, folder / "a.pt2", 0, 40), linear_program(digits, folder / "b.pt2", 1, 60)]


@pytest.fixture
def imported_home(trend_home, program_files, test_zoo, capsys):
    """A store with the zoo model FP (copied from the test zoo) and two imported linear networks."""
    copy_zoo_model(trend_home, FP)
    for name, path in zip((LIN, OTHER), program_files):
        assert main(["zoo", "import", name, str(path), "--expects", "pixels"]) == 0
    capsys.readouterr()
    return trend_home


def _one_line_error(capsys, text: str) -> None:
    err = capsys.readouterr().err
    assert text in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_eval_measures_an_imported_network_like_a_zoo_model(imported_home, program_files, digits, capsys):
    x, y = digits.tensors("test")
    program = torch.export.load(str(program_files[0])).module()
    with torch.no_grad():
        direct = 100 * int((program(x).argmax(1) == y).sum()) / len(y)
    assert 80 < direct < 100  # a trained network: far above chance, so the comparison means something
    assert main(["eval", LIN, FP, "--json", "--device", "cpu"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[LIN]["test_acc_%"] == pytest.approx(direct, abs=1e-6)
    assert rows[LIN]["label"] == "lin" and rows[LIN]["arch"] == "imported"
    assert rows[FP]["arch"] == "resnet18" and rows[FP]["test_acc_%"] > 50
    assert main(["eval", "--json", "--device", "cpu"]) == 0  # no names: every model that loads, imported ones too
    everything = {r["name"]: r["test_acc_%"] for r in json.loads(capsys.readouterr().out)}
    assert set(everything) == {FP, LIN, OTHER} and everything[LIN] == pytest.approx(direct, abs=1e-6)
    assert main(["eval", "user/digits/nope"]) == 2
    _one_line_error(capsys, "user/digits/nope is not in the zoo")


def test_fit_tm_between_a_zoo_model_and_an_imported_network(imported_home, capsys):
    argv = ["fit-tm", "--eps", "0.05", "0.1", "0.2", "0.3", "--steps", "5", "--limit", "60", "--points", "5"]
    argv += ["--device", "cpu", "--json"]
    assert main([*argv, "--source", LIN, "--target", FP]) == 0
    captured = capsys.readouterr()
    assert "training" not in captured.err
    data = json.loads(captured.out)
    assert (data["source"], data["target"]) == ("lin", "FP-s0")
    assert [m["eps"] for m in data["measured"]] == pytest.approx([0.05, 0.1, 0.2, 0.3])
    f_ss = [m["f_ss"] for m in data["measured"]]
    assert f_ss[-1] > f_ss[0] >= 0 and f_ss[-1] > 10  # PGD through the imported network finds more as eps grows
    assert len(data["curve"]) == 5 and data["rmse"] == data["rmse"]  # a curve, and a finite fit error
    assert main([*argv, "--source", FP, "--target", OTHER]) == 0  # as the target too
    assert json.loads(capsys.readouterr().out)["target"] == "other"


def test_boundary_maps_an_imported_network(imported_home, program_files, digits, tmp_path, capsys):
    out = tmp_path / "map.png"
    argv = ["boundary", "--model", LIN, FP, "--index", "3", "--resolution", "11", "--out", str(out)]
    assert main([*argv, "--json", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert [m["model"] for m in data["models"]] == ["lin", "FP-s0"] and "x: gradient of lin" in captured.err
    x = digits.tensors("test", 4)[0]
    with torch.no_grad():
        expected = int(torch.export.load(str(program_files[0])).module()(x[3:4]).argmax())
    assert data["models"][0]["clean_pred"] == expected  # the centre of the map is the network's own prediction
    image = Image.open(out)
    assert image.width > 2 * image.height  # two maps side by side
    assert len(set(image.convert("RGB").getdata())) > 2  # coloured by class, not blank


def test_a_missing_imported_network_is_one_sentence_before_any_training(trend_home, capsys):
    for argv in (
        ["fit-tm", "--source", FP, "--target", "user/digits/nope", "--eps", "0.1", "0.2", "0.3"],
        ["boundary", "--model", FP, "user/digits/nope", "--index", "0"],
    ):
        assert main([*argv, "--device", "cpu"]) == 2
        _one_line_error(capsys, "user/digits/nope is not in the zoo")
    assert not Zoo(trend_home).has(FP)  # the zoo model was not trained while the imported one was missing
    assert main(["eval", "user/nowhere/net"]) == 2
    _one_line_error(capsys, "Unknown dataset")


def test_select_reads_imported_networks_accuracies_from_the_zoo(imported_home, tmp_path, capsys):
    matrix = tmp_path / "tm.csv"
    argv = ["transfer", "--models", FP, LIN, OTHER, "--steps", "3", "--limit", "30", "--device", "cpu"]
    assert main([*argv, "--csv", str(matrix)]) == 0  # rows and columns carry the labels: FP-s0, lin, other
    capsys.readouterr()
    acc = {label: Zoo().metadata(name)["test_acc"] for label, name in (("lin", LIN), ("other", OTHER), ("FP-s0", FP))}
    low, high = sorted(("lin", "other"), key=acc.get)
    assert 0.8 < acc[low] <= acc[high] < acc["FP-s0"]  # (so a floor just above the lower keeps the other two)

    def chosen(min_acc: float) -> list[list[str]]:
        assert main(["select", "--tm", str(matrix), "-k", "2", "--min-acc", str(min_acc), "--json"]) == 0
        return [row["members"] for row in json.loads(capsys.readouterr().out)]

    assert {"lin", "other"} <= {label for members in chosen(0.5) for label in members}
    if acc[low] < acc[high]:  # (test accuracies differ in steps of 1/359: the floor lies between them)
        (members,) = chosen(round(acc[low] + 0.0005, 4))
        assert sorted(members) == sorted([high, "FP-s0"])


def test_the_notebook_catalog_lists_imported_networks(imported_home):
    import trend_core as tl

    assert tl.list_models("user/*") == [LIN, OTHER]  # as `trend zoo list` shows them
    assert tl.list_models(dataset="digits") == sorted([FP, LIN, OTHER]) and tl.list_models(dataset="mnist") == []


@pytest.fixture
def my_digits(digits, tmp_path, monkeypatch) -> str:
    """An imported dataset, my-digits: the first 100 digits test images (under this test's own TREND_DATA)."""
    import numpy as np

    from trend_core.data.user import import_dataset

    monkeypatch.setenv("TREND_DATA", str(tmp_path / "data"))
    x, y = digits.tensors("test", 100)
    np.savez(tmp_path / "mine.npz", x=x.numpy(), y=y.numpy())
    import_dataset("my-digits", tmp_path / "mine.npz")
    return "my-digits"


def test_training_on_an_imported_dataset_says_to_import_networks(trend_home, my_digits, capsys):
    assert main(["train", "my-digits/smallcnn/FP/sgd/s0"]) == 2
    _one_line_error(capsys, "my-digits is data you imported (evaluation images only), so its networks are imported")
    assert main(["train", "nowhere/smallcnn/FP/sgd/s0"]) == 2  # an unknown one is still unknown
    _one_line_error(capsys, "Unknown dataset 'nowhere'")


def test_eval_of_the_whole_zoo_leaves_out_a_network_whose_dataset_is_gone(trend_home, my_digits, program_files, capsys):
    import shutil

    from trend_core.config.datasets import USER_DATASETS, data_root

    for name in ("user/my-digits/pix", LIN):
        assert main(["zoo", "import", name, str(program_files[0]), "--expects", "pixels"]) == 0
    capsys.readouterr()
    assert main(["eval", "--json", "--device", "cpu"]) == 0
    rows = {r["name"]: r["test_acc_%"] for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"user/my-digits/pix", LIN} and rows["user/my-digits/pix"] > 80  # its own 100 images
    shutil.rmtree(data_root() / USER_DATASETS / my_digits)  # the defender removed the data, not the network
    assert main(["eval", "--json", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert [r["name"] for r in json.loads(captured.out)] == [LIN]
    assert "user/my-digits/pix is left out: its dataset my-digits is not imported" in captured.err
