"""The robustness card of a chosen ensemble (#21): its numbers are the engine's own (clean accuracy, A-GD, the audit's
worst case, each with its 95% interval; the TM sub-matrix), its JSON reads back equal, its HTML escapes what it
shows, and `trend ensemble export` writes a .pt2 that plain torch in a fresh process loads and that votes exactly
as the engine's MajorityVote, next to card.json and card.html; bad input is one sentence, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trend_core.attacks.base import predict
from trend_core.attacks.registry import make_attack
from trend_core.cli import main
from trend_core.config.labels import set_label
from trend_core.ensemble.selection import ENSEMBLE_LABEL
from trend_core.ensemble.verdict import accuracy_interval
from trend_core.errors import TrendError
from trend_core.experiments.audit import run_audit
from trend_core.experiments.robustness_card import RobustnessCard, robustness_card
from trend_core.experiments.transfer import run_transfer
from trend_core.experiments.vote_robustness import agd_evaluation
from trend_core.models.exported import save_program
from trend_core.models.zoo import Zoo
from trend_core.nn.vote import MajorityVote
from trend_core.plots.card import card_html, card_json

NAMES = ["user/digits/lin-a", "user/digits/lin-b"]
EPS = [0.05, 0.1]
LIMIT, STEPS = 16, 3


def _linear(digits, seed: int, epochs: int, normalize: bool) -> nn.Module:
    """A linear classifier on the 64 pixels, trained for a moment (a defender's own network, cheap to attack)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x, y = digits.tensors("train")
    x = (x - 0.5) / 0.25 if normalize else x
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(epochs):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def defender_zoo(tmp_path_factory, digits) -> Zoo:
    """A zoo holding two imported networks: one on pixels, one on normalized inputs."""
    folder = tmp_path_factory.mktemp("defender")
    zoo = Zoo(folder / "home")
    example = torch.rand(2, 1, 8, 8)
    save_program(_linear(digits, 0, 40, False), example, folder / "a.pt2")
    save_program(_linear(digits, 1, 60, True), (example - 0.5) / 0.25, folder / "b.pt2")
    zoo.import_program(NAMES[0], folder / "a.pt2")
    zoo.import_program(NAMES[1], folder / "b.pt2", expects="normalized", mean=[0.5], std=[0.25])
    return zoo


@pytest.fixture(scope="module")
def card(defender_zoo) -> RobustnessCard:
    return robustness_card(NAMES, epsilons=EPS, zoo=defender_zoo, steps=STEPS, limit=LIMIT, device="cpu")


def _same(row: dict, per_image) -> None:
    expected = accuracy_interval(np.asarray(per_image, dtype=float))
    assert row["accuracy"] == pytest.approx(expected.estimate, abs=1e-9)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.low, expected.high), abs=1e-9)


def test_the_card_holds_what_the_engine_computes(card, defender_zoo, digits):
    x, y = digits.tensors("test", LIMIT)
    members = [defender_zoo.load(n) for n in NAMES]
    assert card.dataset == "digits" and card.n_images == LIMIT and card.labels == ["lin-a", "lin-b"]
    assert [m["name"] for m in card.members] == NAMES
    for row, model in zip(card.members, members):
        _same(row["clean"], (predict(model, x) == y).float().numpy())
    vote = MajorityVote(members, 0, card.labels)
    _same(card.vote_clean, vote.expected_accuracy(x, y).numpy())
    assert 0.7 < card.vote_clean["accuracy"] <= 1.0  # trained networks: the check is not vacuous
    for row, eps in zip(card.agd, EPS):
        _, per_image = agd_evaluation(vote, eps, STEPS, members_alone=False, data=(x, y), device="cpu")
        _same(row, per_image[ENSEMBLE_LABEL])
        assert row["eps"] == eps and row["steps"] == STEPS
    report = run_audit(NAMES, zoo=defender_zoo, ensemble=True, epsilons=EPS, data=(x, y), device="cpu")
    for row, eps in zip(card.audit, EPS):
        _same(row, report.worst_per_image[eps])
        assert row["accuracy"] <= card.vote_clean["accuracy"] + 1e-9  # a worst case never beats clean
    assert [f["name"] for f in card.flags] == [f.name for f in report.flags]
    assert card.agd[0]["accuracy"] >= card.agd[1]["accuracy"] - 1e-9  # more eps, no more robust
    measured = run_transfer(members, _pgd(card.tm["params"]), data=(x, y), device="cpu").matrix(averages=False)
    assert card.tm["labels"] == card.labels and card.tm["source"] == "measured" and card.tm["eps"] == EPS[0]
    np.testing.assert_allclose(np.array(card.tm["matrix"], dtype=float), measured.to_numpy(float), atol=1e-9)


def _pgd(params: dict):
    return make_attack("pgd", **params)


def test_the_json_reads_back_equal_and_the_html_shows_every_number(card):
    again = RobustnessCard.from_dict(json.loads(card_json(card)))
    assert again == card
    page = card_html(card)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    for row in [*card.agd, *card.audit]:
        assert f"{100 * row['accuracy']:.1f}%" in page
    assert "user/digits/lin-a" in page and "lin-b" in page
    with pytest.raises(TrendError, match="not a robustness card"):
        RobustnessCard.from_dict({"members": []})


def test_modules_with_hostile_labels_are_escaped_and_a_given_matrix_is_used(defender_zoo, digits):
    x, y = digits.tensors("test", 12)
    members = [set_label(defender_zoo.load(n), label) for n, label in zip(NAMES, ["<script>x</script>", "a&b\"'"])]
    given = pd.DataFrame([[1.0, 0.25], [0.5, 1.0]], index=["<script>x</script>", "a&b\"'"])
    given.columns = given.index
    made = robustness_card(members, epsilons=[0.1], data=(x, y), tm=given, steps=2, device="cpu")
    assert made.tm["matrix"] == [[1.0, 0.25], [0.5, 1.0]] and made.tm["source"] == "given"
    assert [m["name"] for m in made.members] == [None, None] and made.commands == []
    page = card_html(made)
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "a&amp;b&quot;&#x27;" in page
    assert RobustnessCard.from_dict(json.loads(card_json(made))) == made


def test_bad_input_is_one_sentence(defender_zoo):
    with pytest.raises(TrendError, match="at least two"):
        robustness_card(NAMES[:1], epsilons=[0.1], zoo=defender_zoo)
    with pytest.raises(TrendError, match="not in the zoo"):
        robustness_card([NAMES[0], "user/digits/missing"], epsilons=[0.1], zoo=defender_zoo)
    with pytest.raises(TrendError, match="audit level"):
        robustness_card(NAMES, epsilons=[0.1], zoo=defender_zoo, level="extreme")


# ----------------------------------------------------------------------------- trend ensemble export
def test_cli_export_writes_a_program_plain_torch_runs_as_the_vote(defender_zoo, digits, tmp_path, capsys):
    out = tmp_path / "shipped"
    home = str(defender_zoo.root)
    args = ["ensemble", "export", "--models", *NAMES, "--out", str(out), "--eps", "0.1", "--limit", str(LIMIT)]
    assert main([*args, "--steps", str(STEPS), "--home", home, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "audit worst case" in printed and "A-GD" in printed
    assert sorted(p.name for p in out.iterdir()) == ["card.html", "card.json", "ensemble.pt2"]
    written = RobustnessCard.from_dict(json.loads((out / "card.json").read_text()))
    assert written.commands[0].startswith("trend ensemble export --models user/digits/lin-a user/digits/lin-b")
    assert any(c.startswith("trend audit ") and "--ensemble" in c for c in written.commands)
    assert (out / "card.html").read_text().count("<table>") == 4
    images = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(5))  # members disagree: ties drawn
    x = torch.cat([digits.tensors("test", 100)[0], images])
    torch.save(x, tmp_path / "x.pt")
    script = (
        "import sys, torch\n"
        "program = torch.export.load(sys.argv[1]).module()\n"
        "print(program(torch.load(sys.argv[2])).argmax(1).tolist())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(out / "ensemble.pt2"), str(tmp_path / "x.pt")],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    vote = MajorityVote([defender_zoo.load(n) for n in NAMES], written.seed, written.labels)
    with torch.no_grad():
        expected = vote.decide(vote.votes(x), x)
    assert json.loads(done.stdout) == expected.tolist()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--models", NAMES[0]], "at least two"),
        (["--models", NAMES[0], "user/digits/nope"], "not in the zoo"),
        (["--models", NAMES[0], "digits/resnet18-w0.25/FP/sgd/s0", "user/mnist/x"], "one dataset"),
        (["--models", *NAMES, "--limit", "0"], "--limit"),
    ],
)
def test_cli_export_refuses_in_one_sentence(defender_zoo, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code = main(["ensemble", "export", "--out", str(out), "--home", str(defender_zoo.root), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (out / "ensemble.pt2").exists()


def test_cli_export_refuses_a_file_as_its_folder(defender_zoo, tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    code = main(["ensemble", "export", "--models", *NAMES, "--out", str(target), "--home", str(defender_zoo.root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is a file" in err[0]
    assert target.read_text() == "keep me"


def test_audit_and_ensemble_attack_take_imported_networks(defender_zoo, capsys):
    home = ["--home", str(defender_zoo.root), "--device", "cpu", "--limit", "8"]
    assert main(["audit", "--models", *NAMES, "--ensemble", "--eps", "0.1", "--no-cache", *home]) == 0
    out = capsys.readouterr().out
    assert "majority vote of user/digits/lin-a, user/digits/lin-b" in out and "worst case" in out
    assert main(["ensemble-attack", "--models", *NAMES, "--rule", "agd", "--eps", "0.1", "--steps", "2", *home]) == 0
    assert "agd" in capsys.readouterr().out
