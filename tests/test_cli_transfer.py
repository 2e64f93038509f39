"""`trend transfer` on the digits test zoo: the TM matrix as text, JSON and CSV, and bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import FP, Q1, Q2

from trend_core.attacks import PGD
from trend_core.cli import main
from trend_core.experiments.transfer import run_transfer

LABELS = ["FP-s0", "Q1-s0", "Q2-s0"]
BASE = ["transfer", "--models", FP, Q1, Q2, "--attack", "pgd", "--steps", "10", "--limit", "60", "--device", "cpu"]


def test_json_matches_the_engine(linked_zoo_home, zoo_model, capsys):
    assert main(BASE + ["--json"]) == 0
    captured = capsys.readouterr()
    assert "training" not in captured.err
    data = json.loads(captured.out)
    assert data["sources"] == LABELS and data["targets"] == LABELS and data["eps"] == 0.1 and data["n_images"] == 60
    for label in LABELS:
        assert data["tm"][label][label] == 1.0
    engine = run_transfer(
        [zoo_model(n) for n in (FP, Q1, Q2)], PGD(eps=0.1, steps=10), limit=60, device="cpu", cache=None
    )
    for s in LABELS:
        for t in LABELS:
            assert data["tm"][s][t] == pytest.approx(engine.matrix().at[s, t], nan_ok=True)
    generated = {(p["source"], p["target"]): p["generated"] for p in data["pairs"]}
    engine_rows = engine.long()[["source", "target", "generated"]].itertuples(index=False)
    assert generated == {(s, t): g for s, t, g in engine_rows}
    assert any(g > 0 for g in generated.values())


def test_csv_and_long_csv(linked_zoo_home, tmp_path, capsys):
    matrix_path, long_path = tmp_path / "tm.csv", tmp_path / "pairs.csv"
    assert main(BASE + ["--csv", str(matrix_path), "--long-csv", str(long_path)]) == 0
    capsys.readouterr()
    matrix = pd.read_csv(matrix_path, index_col=0)
    assert list(matrix.index) == LABELS + ["col_avg"] and list(matrix.columns) == LABELS + ["row_avg"]
    assert [matrix.at[s, s] for s in LABELS] == [1.0, 1.0, 1.0]
    off = [matrix.at[s, t] for s in LABELS for t in LABELS if s != t]
    assert all(0 <= v <= 1 for v in off if v == v)
    expected_row = pd.Series([matrix.at["FP-s0", t] for t in LABELS[1:]]).mean()
    assert matrix.at["FP-s0", "row_avg"] == pytest.approx(expected_row, nan_ok=True)
    pairs = pd.read_csv(long_path)
    assert len(pairs) == 9
    assert {"n_common", "generated", "transferred", "tm", "mean_l2", "mean_linf"} <= set(pairs.columns)
    assert (pairs["generated"] <= pairs["n_common"]).all() and (pairs["transferred"] <= pairs["generated"]).all()
    assert main(BASE) == 0  # the text table, served from the cache
    out = capsys.readouterr().out
    assert "row_avg" in out and "col_avg" in out and "Q2-s0" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["transfer", "--models", FP, Q1, "--attack", "fgsm"], "Unknown attack"),
        (["transfer", "--models", FP, Q1, "--eps", "0"], "eps"),
        (["transfer", "--models", FP, "digits/resnet18/Q3x/sgd/s0"], "Q3x"),
        (["transfer", "--models", FP, Q1, "--limit", "zero"], "--limit"),
        (["transfer", "--models", FP, Q1, "--attack", "pgd", "--kappa", "30"], "kappa"),
        (["transfer", "--models", FP, Q1, "--sources", Q2], "--sources"),
    ],
)
def test_bad_input_exits_2_with_one_line(linked_zoo_home, capsys, args, message):
    assert main(args + ["--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("trend: error:")
