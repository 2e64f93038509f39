"""A defender's own networks (#21): a torch.export program (.pt2) of a network the app does not define is imported
into the zoo as user/<dataset>/<name>, checked before it is accepted (hostile pickles, wrong image size, wrong
class count: one sentence, nothing written), loaded as a pixels-in model, and attacked next to zoo models."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import FP, REPO, TEST_ZOO_DIR

from trend_core.cli import main
from trend_core.config.labels import model_labels
from trend_core.config.specs import ModelSpec
from trend_core.config.user_models import UserModelName, parse_model_name, parse_user_model
from trend_core.errors import TrendError
from trend_core.models.exported import save_program
from trend_core.models.imported import ImportedNetwork
from trend_core.models.zoo import Zoo

MEAN, STD = [0.3], [0.4]


def _trained_linear(digits, normalize: bool, classes: int = 10) -> nn.Module:
    """A linear classifier on the 64 pixels, trained for a moment (about 90% on digits)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, classes))
    x, y = digits.tensors("train")
    x = (x - MEAN[0]) / STD[0] if normalize else x
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def programs(tmp_path_factory, digits):
    """.pt2 files: a trained net on normalized inputs, one on pixels, one for 28x28 images, one with 7 classes."""
    folder = tmp_path_factory.mktemp("programs")
    example = torch.rand(2, 1, 8, 8)
    return {
        "normalized": save_program(_trained_linear(digits, True), example, folder / "norm.pt2"),
        "pixels": save_program(_trained_linear(digits, False), example, folder / "pix.pt2"),
        "big": save_program(
            nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), torch.rand(2, 1, 28, 28), folder / "mnist_sized.pt2"
        ),
        "seven": save_program(nn.Sequential(nn.Flatten(), nn.Linear(64, 7)), example, folder / "seven.pt2"),
    }


def _written(home: Path) -> list[Path]:
    return [p for p in (home / "models").rglob("*") if p.is_file() and ".locks" not in p.parts]


def test_names_are_parsed_in_the_config_layer():
    assert parse_model_name("user/digits/my-net") == UserModelName("digits", "my-net")
    assert isinstance(parse_model_name(FP), ModelSpec)
    assert parse_user_model("user/digits/my-net").short_name == "my-net"
    for bad, message in [
        ("user/digits/My Net", "lowercase"),
        ("user/nowhere/net", "Unknown dataset"),
        ("user/digits", "user/<dataset>/<name>"),
    ]:
        with pytest.raises(TrendError, match=message):
            parse_user_model(bad)


def test_round_trip_records_accuracy_and_normalizes_itself(trend_home, programs, digits):
    zoo = Zoo()
    meta = zoo.import_program("user/digits/lin", programs["normalized"], expects="normalized", mean=MEAN, std=STD)
    assert meta["origin"] == "imported" and meta["expects"] == "normalized" and meta["short_name"] == "lin"
    assert meta["test_images"] == len(digits.test) and meta["test_acc"] > 0.8  # trained: far above chance (0.1)
    stored = json.loads((trend_home / "models" / "user" / "digits" / "lin.json").read_text())
    assert stored["program_sha256"] == meta["program_sha256"] and stored["mean"] == MEAN and stored["std"] == STD
    model = zoo.load("user/digits/lin")
    assert isinstance(model, ImportedNetwork) and not model.training and model.name == "user/digits/lin"
    x = digits.tensors("test", limit=50)[0]
    program = torch.export.load(str(programs["normalized"])).module()
    with torch.no_grad():
        assert torch.allclose(model(x), program((x - MEAN[0]) / STD[0]), atol=1e-5)
    assert zoo.has("user/digits/lin") and zoo.metadata("user/digits/lin")["test_acc"] == meta["test_acc"]
    assert zoo.get_or_train("user/digits/lin")(x).shape == (50, 10)
    assert model_labels([model]) == ["lin"]
    assert zoo.list() == [] and [m["name"] for m in zoo.list("digits", imported_networks=True)] == ["user/digits/lin"]
    assert zoo.list("mnist", imported_networks=True) == []
    with pytest.raises(TrendError, match="already in the zoo"):
        zoo.import_program("user/digits/lin", programs["normalized"], expects="normalized", mean=MEAN, std=STD)
    assert zoo.delete("user/digits/lin") and not zoo.has("user/digits/lin") and _written(trend_home) == []
    with pytest.raises(TrendError, match="not in the zoo"):
        zoo.load("user/digits/lin")


def test_an_input_transform_runs_forward_with_a_bpda_gradient(trend_home, programs, digits):
    zoo = Zoo()
    zoo.import_program("user/digits/q2", programs["pixels"], expects="pixels", transform="quant:2")
    model = zoo.load("user/digits/q2")
    x = digits.tensors("test", limit=20)[0].requires_grad_(True)
    program = torch.export.load(str(programs["pixels"])).module()
    quantized = (torch.floor(x.detach() * 4).clamp(0, 3) + 0.5) / 4  # 2-bit levels of [0, 1]
    out = model(x)
    assert torch.allclose(out, program(quantized), atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0  # the straight-through gradient reaches the pixels
    with pytest.raises(TrendError, match="Unknown input transform"):
        zoo.import_program("user/digits/bad", programs["pixels"], transform="jpeg")


class Evil:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['TREND_TEST_MARKER'], 'w').write('ran')",))


def _hostile(source: Path, target: Path) -> Path:
    """``source`` with its first weight stored as a pickle that would run code."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                next(iter(config["config"].values()))["use_pickle"] = True
                data = json.dumps(config).encode()
            elif item.filename.endswith("/weight_0"):
                data = pickle.dumps(Evil())
            new.writestr(item, data)
    return target


def test_refusals_are_one_sentence_and_write_nothing(trend_home, programs, tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("TREND_TEST_MARKER", str(marker))
    zoo = Zoo()
    hostile = _hostile(programs["pixels"], tmp_path / "hostile.pt2")
    cases = [
        (hostile, "pickled object, which could run code"),
        (programs["big"], "expects 1x28x28 images but digits images are 1x8x8"),
        (programs["seven"], "gives 7 outputs per image but digits has 10 classes"),
    ]
    for path, message in cases:
        with pytest.raises(TrendError, match=message) as caught:
            zoo.import_program("user/digits/net", path, expects="pixels")
        assert str(caught.value).count(". ") == 0 and "\n" not in str(caught.value)  # one sentence
    with pytest.raises(TrendError, match="one per channel"):
        zoo.import_program("user/digits/net", programs["normalized"], expects="normalized")
    assert not marker.exists() and _written(trend_home) == []


def test_zoo_import_exit_codes(trend_home, programs, tmp_path, capsys):
    good = ["zoo", "import", "user/digits/pix", str(programs["pixels"]), "--expects", "pixels"]
    assert main(good) == 0
    assert "imported user/digits/pix as pix (test accuracy 0." in capsys.readouterr().out
    state_dict = tmp_path / "weights.pt"
    torch.save(nn.Linear(2, 2).state_dict(), state_dict)
    bad = [
        (
            [
                "zoo",
                "import",
                "user/digits/h",
                str(_hostile(programs["pixels"], tmp_path / "h.pt2")),
                "--expects",
                "pixels",
            ],
            "could run code",
        ),
        (["zoo", "import", "user/digits/b", str(programs["big"]), "--expects", "pixels"], "1x28x28"),
        (["zoo", "import", "user/digits/s", str(programs["seven"]), "--expects", "pixels"], "7 outputs"),
        (["zoo", "import", "user/digits/w", str(state_dict), "--expects", "pixels"], "not a .pt2 file"),
        (["zoo", "import", FP, str(programs["pixels"])], "user/<dataset>/<name>"),
        (["zoo", "import", "user/digits/e", str(programs["pixels"])], "--expects pixels"),
        (good, "already in the zoo"),
        (["train", "user/digits/pix"], "is an imported network"),
    ]
    for argv, message in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert main(good + ["--force"]) == 0
    capsys.readouterr()
    assert main(["zoo", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["origin"]) for r in rows] == [("user/digits/pix", "imported")] and rows[0]["test_acc"] > 0.8
    assert main(["zoo", "delete", "user/digits/pix"]) == 0 and _written(trend_home) == []


def _zoo_model_into(home: Path, test_zoo: Zoo, name: str) -> None:
    """Copy a trained test-zoo model's files into ``home``'s zoo (nothing retrains)."""
    key = ModelSpec.parse(name).key
    (home / "models").mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".safetensors"):
        shutil.copy(TEST_ZOO_DIR / "models" / f"{key}{suffix}", home / "models" / f"{key}{suffix}")


def test_transfer_between_a_zoo_model_and_an_imported_network(trend_home, test_zoo, programs, capsys):
    _zoo_model_into(trend_home, test_zoo, FP)
    assert (
        main(
            [
                "zoo",
                "import",
                "user/digits/lin",
                str(programs["normalized"]),
                "--expects",
                "normalized",
                "--mean",
                "0.3",
                "--std",
                "0.4",
            ]
        )
        == 0
    )
    capsys.readouterr()
    argv = [
        "transfer",
        "--models",
        FP,
        "user/digits/lin",
        "--steps",
        "10",
        "--limit",
        "60",
        "--device",
        "cpu",
        "--json",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "training" not in captured.err
    data = json.loads(captured.out)
    assert data["sources"] == ["FP-s0", "lin"] and data["targets"] == ["FP-s0", "lin"]
    assert data["tm"]["FP-s0"]["FP-s0"] == 1.0 and data["tm"]["lin"]["lin"] == 1.0
    generated = {(p["source"], p["target"]): p["generated"] for p in data["pairs"]}
    assert generated[("lin", "FP-s0")] > 0 and generated[("FP-s0", "lin")] > 0  # both attacked: gradients flow
    assert main(argv[:-1] + ["--sources", "user/digits/lin"]) == 0  # a subset named by the imported name
    assert "lin" in capsys.readouterr().out


def test_the_bundled_example_exports_networks_that_import(trend_home, tmp_path, capsys):
    folder = tmp_path / "nets"
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "defender_example.py"), str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    commands = [line.split()[1:] for line in out.splitlines() if line.startswith("trend zoo import")]
    assert len(commands) == 2
    for argv in commands:
        assert main(argv) == 0
    capsys.readouterr()
    rows = Zoo().list("digits", imported_networks=True)
    assert [r["name"] for r in rows] == ["user/digits/seq-cnn", "user/digits/tiny-resnet"]
    assert all(r["test_acc"] > 0.85 for r in rows)


def test_a_network_for_an_imported_dataset(trend_home, programs, digits, tmp_path, monkeypatch):
    import numpy as np

    from trend_core.data.user import import_dataset

    monkeypatch.setenv("TREND_DATA", str(tmp_path / "data"))
    x, y = digits.tensors("test")
    np.savez(tmp_path / "mine.npz", x=x.numpy(), y=y.numpy())
    import_dataset("my-digits", tmp_path / "mine.npz")
    zoo = Zoo()
    mine = zoo.import_program("user/my-digits/pix", programs["pixels"])
    same = zoo.import_program("user/digits/pix", programs["pixels"])
    assert mine["test_acc"] == same["test_acc"] > 0.8 and mine["test_images"] == len(y)
    assert [m["name"] for m in zoo.list("my-digits", imported_networks=True)] == ["user/my-digits/pix"]
