"""`trend ensemble-attack`, `trend select`, `trend fit-tm`, `trend boundary` on the digits test zoo, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import FP, Q1, Q2
from PIL import Image

from trend_core.cli import main


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ensemble_attack_json_and_members(linked_zoo_home, capsys):
    argv = [
        "ensemble-attack",
        "--models",
        FP,
        Q1,
        Q2,
        "--rule",
        "A-GD",
        "--eps",
        "0.05",
        "0.2",
        "--steps",
        "2",
        "--step-size",
        "0.1",
        "--limit",
        "8",
        "--device",
        "cpu",
        "--members",
    ]
    code, out, err = run(argv + ["--json"], capsys)
    assert code == 0 and "training" not in err
    data = json.loads(out)
    sweep = pd.DataFrame(data["sweep"])
    assert set(sweep["rule"]) == {"agd"} and set(sweep["eps"]) == {0.05, 0.2}
    assert set(sweep["model"]) == {"ensemble", "FP-s0", "Q1-s0", "Q2-s0"} and len(data["ratios"]) == 2 * 3
    code, out, _ = run(argv, capsys)  # the text tables, served from the store
    assert code == 0 and "times more robust" in out and "on_adv:Q1-s0" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["ensemble-attack", "--models", FP, Q1, "--rule", "mean"], "Unknown ensemble attack rule"),
        (["ensemble-attack", "--models", FP], "at least two"),
        (["ensemble-attack", "--models", FP, Q1, "--eps", "2"], "eps"),
        (["ensemble-attack", "--models", FP, Q1, "--steps", "many"], "--steps"),
        (["fit-tm", "--source", FP, "--target", Q1, "--eps", "0.1", "0.2"], "at least 3"),
        (["fit-tm", "--source", FP, "--target", FP], "same model"),
        (["fit-tm", "--source", FP, "--target", Q1, "--attack", "deepfool"], "eps-bounded"),
        (["boundary", "--model", FP, "--index", "5000"], "--index must be in 0.."),
        (["boundary", "--model", FP, "--index", "0", "--resolution", "10"], "odd"),
        (["boundary", "--model", FP, "--index", "0", "--out", "map.jpg"], ".png"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(linked_zoo_home, capsys, argv, message):
    code, _, err = run(argv + ["--device", "cpu"], capsys)
    assert code == 2 and message in err and err.startswith("trend: error:") and len(err.strip().splitlines()) == 1


def write_tm(path, names, values):
    frame = pd.DataFrame(values, index=pd.Index(names, name="source"), columns=names)
    frame["row_avg"] = 0.5
    frame.loc["col_avg"] = 0.5
    frame.to_csv(path)


def test_select_from_a_transfer_csv(linked_zoo_home, tmp_path, capsys):
    names = ["FP-s0", "Q1-s0", "Q2-s0", "Other-s9"]
    values = np.array([[1.0, 0.2, 0.3, 0.9], [0.25, 1.0, 0.1, 0.8], [0.35, 0.15, 1.0, 0.7], [0.9, 0.8, 0.7, 1.0]])
    path = tmp_path / "tm.csv"
    write_tm(path, names, values)
    code, out, err = run(["select", "--tm", str(path), "-k", "3", "--json"], capsys)
    assert code == 0 and "exhaustive" in err
    ranked = json.loads(out)
    assert ranked[0]["members"] == ["FP-s0", "Q1-s0", "Q2-s0"] and ranked[0]["rank"] == 1 and len(ranked) == 4
    assert ranked[0]["score"] == pytest.approx(np.mean([(0.2 + 0.25) / 2, (0.3 + 0.35) / 2, (0.1 + 0.15) / 2]))
    assert ranked[0]["min_acc"] is None or ranked[0]["min_acc"] > 0  # accuracies come from the zoo when known
    code, out, _ = run(["select", "--tm", str(path), "-k", "2", "--require", "Other-s9", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["members"] == ["Q2-s0", "Other-s9"]
    code, out, _ = run(["select", "--tm", str(path), "-k", "2"], capsys)
    first = [line for line in out.splitlines() if line.split()[:1] == ["1"]]
    assert code == 0 and "Q1-s0 + Q2-s0" in first[0]
    code, _, err = run(["select", "--tm", str(path), "-k", "2", "--min-acc", "0.5"], capsys)
    assert code == 2 and "Other-s9" in err  # not in the zoo: no accuracy to check against the floor


@pytest.mark.parametrize(
    "argv,message",
    [
        (["-k", "1"], "whole number >= 2"),
        (["-k", "two"], "-k"),
        (["-k", "2", "--require", "VGG"], "not in the TM"),
        (["-k", "2", "--min-acc", "high"], "--min-acc"),
    ],
)
def test_select_bad_input(tmp_path, capsys, argv, message):
    path = tmp_path / "tm.csv"
    write_tm(path, ["A", "B", "C"], np.eye(3))
    code, _, err = run(["select", "--tm", str(path), *argv], capsys)
    assert code == 2 and message in err
    code, _, err = run(["select", "--tm", str(tmp_path / "none.csv"), "-k", "2"], capsys)
    assert code == 2 and "No TM file" in err


def test_fit_tm_prints_the_fit_and_rmse(linked_zoo_home, capsys):
    code, out, _ = run(
        [
            "fit-tm",
            "--source",
            FP,
            "--target",
            Q2,
            "--eps",
            "0.05",
            "0.15",
            "0.3",
            "--eval-eps",
            "0.1",
            "--steps",
            "5",
            "--step-size",
            "0.05",
            "--limit",
            "24",
            "--device",
            "cpu",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    data = json.loads(out)
    assert data["source"] == "FP-s0" and data["target"] == "Q2-s0" and data["measured_points"] >= 3
    assert data["b_ss"] < 0 and 0 <= data["rmse"] <= 1 and len(data["measured"]) == 4


def test_boundary_png_and_distances(linked_zoo_home, tmp_path, capsys):
    png = tmp_path / "slice.png"
    code, out, err = run(
        ["boundary", "--model", FP, Q1, "--index", "3", "--resolution", "9", "--out", str(png), "--device", "cpu"],
        capsys,
    )
    assert code == 0 and "wrote" in err
    assert "FP-s0" in out and "Q1-s0" in out and "+x" in out
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (2 * 9 * 8 + 6, 9 * 8)


def test_select_reads_the_dashboards_labels_with_both_zoos(trend_home, tmp_path, capsys):
    """With the quick demo's 4-epoch FP next to the preset's, the dashboard labels them FP-s0-e4 and FP-s0-e20:
    `trend select --min-acc` finds each one's accuracy from those labels; the bare FP-s0 is refused, naming them."""
    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import Zoo
    from trend_core.nn.build import build_model

    zoo = Zoo(trend_home)
    accuracies = {FP: 0.98, FP + "/e4": 0.95, Q1: 0.975, Q2: 0.99}
    for name, acc in accuracies.items():
        spec = ModelSpec.parse(name)
        zoo.save(spec, build_model(spec), {"test_acc": acc})  # (untrained weights: only the metadata is read)
    names = ["FP-s0-e20", "FP-s0-e4", "Q1-s0", "Q2-s0"]
    values = np.array([[1.0, 0.2, 0.3, 0.9], [0.25, 1.0, 0.1, 0.8], [0.35, 0.15, 1.0, 0.7], [0.9, 0.8, 0.7, 1.0]])
    path = tmp_path / "tm.csv"
    write_tm(path, names, values)
    for extra in ([], ["--dataset", "digits"]):
        code, out, err = run(["select", "--tm", str(path), "-k", "2", "--min-acc", "0.97", "--json", *extra], capsys)
        assert code == 0, err
        ranked = json.loads(out)
        assert {m for r in ranked for m in r["members"]} == {"FP-s0-e20", "Q1-s0", "Q2-s0"}  # e4 is below 97%
        assert all(r["min_acc"] >= 0.97 for r in ranked)
    write_tm(path, ["FP-s0", "Q1-s0", "Q2-s0"], values[:3, :3])
    code, _, err = run(["select", "--tm", str(path), "-k", "2", "--min-acc", "0.97"], capsys)
    assert code == 2 and "FP-s0-e20, FP-s0-e4" in err and "--dataset" not in err
