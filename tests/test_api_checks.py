"""Data given from Python (``data=(x, y)``, an image and label, a TM matrix) is checked as the CLI checks its
inputs: one TrendError sentence naming the argument, before any attack runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from conftest import FP, Q1

import trend_core as tl
from trend_core.cli import main


class CountingPGD(tl.PGD):
    """PGD that counts its runs: a refusal must come before the first one."""

    runs = 0

    def run(self, *args, **kwargs):
        CountingPGD.runs += 1
        return super().run(*args, **kwargs)


@pytest.fixture
def pair(zoo_model, digits):
    x, y = digits.tensors("test", 24)
    return [zoo_model(FP), zoo_model(Q1)], x, y


def refused(call, *words) -> str:
    """Run ``call``; it must raise a one-sentence TrendError containing ``words``, with no attack run."""
    CountingPGD.runs = 0
    with pytest.raises(tl.TrendError) as raised:
        call()
    message = str(raised.value)
    assert CountingPGD.runs == 0
    assert "\n" not in message and message.endswith("."), message
    for word in words:
        assert word in message, message
    return message


def with_nan(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[3, 0, 2, 2] = float("nan")
    return x


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda x, y: (with_nan(x), y), ["data", "non-finite pixel", "image 3"]),
        (lambda x, y: (x * 255, y), ["data's pixels", "[0, 255]", "divide", "255"]),
        (lambda x, y: (x - 0.5, y), ["data's pixels", "[0, 1]"]),
        (lambda x, y: (x, torch.where(torch.arange(len(y)) == 5, 10, y)), ["data's labels", "0..9", "image 5", "10"]),
        (lambda x, y: (x, y - 1), ["data's labels", ">= 0"]),
        (lambda x, y: (x, y.float() + 0.5), ["data's labels", "whole"]),
        (lambda x, y: (torch.rand(len(y), 3, 32, 32), y), ["data's images are 3x32x32", "1x8x8"]),
        (lambda x, y: (x, y[:-1]), ["data", "images and labels"]),
    ],
)
def test_run_transfer_refuses_bad_data_before_any_attack(pair, make, words):
    models, x, y = pair
    refused(lambda: tl.run_transfer(models, CountingPGD(eps=0.1, steps=2), data=make(x, y)), *words)


def test_every_entry_point_taking_data_checks_it(pair, zoo_model, digits):
    models, x, y = pair
    bad = (with_nan(x), y)
    refused(lambda: tl.fit_tm(models[0], models[1], [0.05, 0.1, 0.2], data=bad), "data", "non-finite")
    refused(lambda: tl.robustness_sweep(models, [0.1], ["agd"], data=bad, steps=2), "data", "non-finite")
    refused(lambda: tl.decision_boundary(models, x[0] * 255, int(y[0])), "image's pixels", "divide")
    refused(lambda: tl.decision_boundary(models, x[0], 10), "label must be classes 0..9", "it is 10")
    refused(lambda: tl.decision_boundary(models, torch.rand(3, 32, 32), 1), "image is 3x32x32", "1x8x8")


def test_every_runner_takes_data_and_its_options_in_one_vocabulary(pair, test_zoo):
    """data= is a dataset name, a bundle or (x, y) for every runner; a name of another dataset, an unknown keyword
    (the removed store=, the old dataset=) or a non-RunOptions options= is one sentence before any attack."""
    from trend_core.experiments.audit import run_audit

    models, x, y = pair
    attack = CountingPGD(eps=0.1, steps=2)
    refused(lambda: tl.run_transfer(models, attack, data="mnist"), "digits models, not mnist")
    refused(lambda: tl.robustness_sweep(models, [0.1], data="mnist", steps=2), "digits models, not mnist")
    refused(lambda: tl.fit_tm(models[0], models[1], [0.05, 0.1, 0.2], attack=attack, data="mnist"), "not mnist")
    refused(lambda: run_audit(FP, zoo=test_zoo, ensemble=False, epsilons=[0.1], data="mnist"), "not mnist")
    refused(lambda: tl.run_transfer(models, attack, store=True), "no argument 'store'", "cache")
    refused(lambda: run_audit(FP, zoo=test_zoo, ensemble=False, epsilons=[0.1], dataset=(x, y)), "'dataset'", "limit")
    refused(lambda: tl.robustness_sweep(models, [0.1], options={"limit": 8}), "options must be a RunOptions")
    named = tl.run_transfer(models, attack, data="digits", limit=24, device="cpu")
    given = tl.run_transfer(models, attack, data=(x, y), options=tl.RunOptions(device="cpu"))
    assert named.pairs.equals(given.pairs) and named.split == "test" and given.split == "custom"


def test_audit_checks_its_dataset(test_zoo, digits):
    from trend_core.experiments.audit import run_audit

    x, y = digits.tensors("test", 16)
    refused(lambda: run_audit(FP, zoo=test_zoo, ensemble=False, epsilons=[0.1], data=(x * 255, y)), "[0, 255]")


def test_models_without_a_spec_are_checked_by_one_forward_pass(digits):
    x, y = digits.tensors("test", 16)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    attack = CountingPGD(eps=0.1, steps=2)
    refused(
        lambda: tl.run_transfer([net], attack, data=(torch.rand(16, 3, 8, 8), y)), "cannot be fed to model0", "3x8x8"
    )
    refused(lambda: tl.run_transfer([net], attack, data=(x, y + 1)), "classes 0..9 of model0")
    result = tl.run_transfer([net], attack, data=(x, y), device="cpu")  # good data still runs
    assert result.n_images == 16 and CountingPGD.runs == 1


def test_good_data_gives_the_same_tm_as_before(pair):
    """The check changes nothing it accepts: 8-bit images are the same images, scaled."""
    models, x, y = pair
    attack = tl.PGD(eps=0.1, steps=3)
    as_floats = tl.run_transfer(models, attack, data=(x, y), device="cpu")
    eight_bit = (x * 255).round().to(torch.uint8)
    as_bytes = tl.run_transfer(models, attack, data=(eight_bit, y.numpy()), device="cpu")
    scaled = tl.run_transfer(models, attack, data=(eight_bit.float() / 255, y), device="cpu")
    pd.testing.assert_frame_equal(as_bytes.long(), scaled.long())
    assert as_floats.n_images == as_bytes.n_images == 24
    assert as_floats.matrix().notna().all().all()


# ----------------------------------------------------------------------------- TM matrices
def tm_frame(values) -> pd.DataFrame:
    return pd.DataFrame(values, index=list("ABC"), columns=list("ABC"))


GOOD = [[1.0, 0.2, 0.3], [0.1, 1.0, 0.4], [0.2, 0.3, 1.0]]


@pytest.mark.parametrize(
    "value,words", [(np.inf, ["'A' -> 'C'", "inf", "[0, 1]"]), (-0.1, ["-0.1"]), ("high", ["non-numeric"])]
)
def test_select_ensembles_refuses_what_the_cli_refuses(value, words):
    values = [row[:] for row in GOOD]
    values[0][2] = value
    refused(lambda: tl.select_ensembles(tm_frame(values), 2), "The TM matrix", *words)


def test_select_ensembles_still_takes_a_result_matrix_with_averages():
    frame = tm_frame(GOOD)
    frame["row_avg"] = 0.25
    frame.loc["col_avg"] = 0.25
    ranked = tl.select_ensembles(frame, 2)
    assert list(ranked["ensemble"]) == ["A + B", "A + C", "B + C"]
    assert ranked["score"].tolist() == pytest.approx([0.15, 0.25, 0.35])


@pytest.mark.parametrize("row", ["A,1,0.2", "A,1,0.2,0.3,0.5"])
def test_cli_select_refuses_a_row_of_the_wrong_length(trend_home, tmp_path, capsys, row):
    """A short row would be padded with NaN and A + C ranked from C -> A alone (0.20 instead of 0.25)."""
    path = tmp_path / "tm.csv"
    path.write_text(f"source,A,B,C\n{row}\nB,0.1,1,0.4\nC,0.2,0.3,1\n")
    code = main(["select", "--tm", str(path), "-k", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("trend: error:") and len(err.strip().splitlines()) == 1
    assert "line 2 has" in err and "the header has 4" in err


def test_cli_select_keeps_an_empty_field_as_an_undefined_tm(trend_home, tmp_path, capsys):
    path = tmp_path / "tm.csv"
    path.write_text("source,A,B,C\nA,1,,0.3\nB,0.1,1,0.4\nC,0.2,0.3,1\n\n")
    assert main(["select", "--tm", str(path), "-k", "2", "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert [r["ensemble"] for r in ranked] == ["A + B", "A + C", "B + C"]
    assert [r["score"] for r in ranked] == pytest.approx([0.1, 0.25, 0.35])
