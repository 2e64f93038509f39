"""Bad input over the CLI, as a careless or hostile user types it: every case is one line on stderr, exit
status 2 and no traceback, before any work (no training, no attack); plus random argument lists and spec
names from hypothesis, which must end in exit 0 or 2 and never in an exception."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FP, Q1
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trend_core.cli import main
from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError

TINY = "digits/smallcnn-w0.25/FP/sgd/s0/e1"


@pytest.fixture
def no_training(monkeypatch):
    """Any training or attack would be work done before the input was checked: make it fail the test."""
    import trend_core.attacks.base as base
    import trend_core.training.train as train

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr(train, "train_model", refuse)
    monkeypatch.setattr(base.Attack, "run", refuse)


@pytest.fixture
def files(tmp_path):
    """Bad files: a regular file to put paths under, an empty .pt, TM CSVs with bad values or a missing column."""
    made = {"file": tmp_path / "plain-file", "empty_pt": tmp_path / "empty.pt"}
    made["file"].write_text("not a folder")
    made["empty_pt"].write_bytes(b"")
    good = "source,A,B,C\nA,1,0.2,0.3\nB,0.1,1,0.4\nC,0.2,0.3,1\n"
    tables = {
        "tm_text_long": "source,target,tm\nA,B,high\nB,A,0.1\nA,A,1\nB,B,1\n",
        "tm_negative": good.replace("0.2,0.3\n", "-1e300,0.3\n", 1),
        "tm_inf": good.replace("0.4", "inf"),
        "tm_above_one": good.replace("0.4", "1.5"),
        "tm_missing_column": "source,A,B\nA,1,0.2\nB,0.1,1\nC,0.2,0.3\n",
    }
    for name, text in tables.items():
        made[name] = tmp_path / f"{name}.csv"
        made[name].write_text(text)
    return made


# (argv with {placeholders}, words the one line must contain)
CASES = [
    (["zoo", "import", TINY, "{empty_pt}"], "empty.pt"),
    (["train", "digits/resnet18-w0.25/FP/sgd/s100000000000000000000000"], "too large"),
    (["train", "digits/resnet18-w0.25/FP/sgd/s" + "7" * 5000], "too large"),
    (["train", "digits/resnet18-w0.25/FP/sgd/s0/e0"], "Epochs"),
    (["train", "digits/resnet18-w0.0001/FP/sgd/s0"], "Width"),
    (["train", TINY, "--home", "{file}/home"], "is a file"),
    (["train", TINY, "--home", "{file}"], "not a folder"),
    (["zoo", "list", "--home", "{file}/x/y"], "is a file"),
    (["select", "--tm", "{tm_text_long}", "-k", "2"], "non-numeric"),
    (["select", "--tm", "{tm_negative}", "-k", "2"], "outside [0, 1]"),
    (["select", "--tm", "{tm_inf}", "-k", "2"], "outside [0, 1]"),
    (["select", "--tm", "{tm_above_one}", "-k", "2"], "outside [0, 1]"),
    (["select", "--tm", "{tm_missing_column}", "-k", "2"], "'C' has a row but no column"),
    (["select", "--tm", "{tm_negative}", "-k", "2", "--min-acc", "7"], "--min-acc"),
    (["select", "--tm", "{tm_negative}", "-k", "2", "--top", "0"], "--top"),
    (["transfer", "--models", FP, Q1, "--csv", "{file}/tm.csv"], "--csv"),
    (["transfer", "--models", FP, Q1, "--long-csv", "{file}/pairs.csv"], "--long-csv"),
    (["transfer", "--models", FP, Q1, "--attack", "pgd-l2", "--eps", "inf"], "finite"),
    (["transfer", "--models", FP, Q1, "--attack", "pgd", "--eps", "nan"], "finite"),
    (["transfer", "--models", FP, Q1, "--steps", "1000000000"], "at most 100000"),
    (["transfer", "--models", FP, Q1, "--steps", "9" * 5000], "whole number"),
    (["transfer", "--models", FP, Q1, "--limit", "0"], "--limit"),
    (["transfer", "--models", FP, Q1, "--limit", "-5"], "--limit"),
    (["ensemble-attack", "--models", FP, Q1, "--seed", "100000000000000000000000"], "--seed"),
    (["ensemble-attack", "--models", FP, Q1, "--steps", "1000000000"], "--steps"),
    (["ensemble-attack", "--models", FP, Q1, "--eps", "inf"], "finite"),
    (["boundary", "--model", FP, "--index", "0", "--seed", "-1"], "--seed"),
    (["boundary", "--model", FP, "--index", "0", "--resolution", "100000000"], "--resolution"),
    (["boundary", "--model", FP, "--index", "0", "--out", "{file}/map.png"], "--out"),
    (["fit-tm", "--source", FP, "--target", Q1, "--points", "-3"], "--points"),
    (["fit-tm", "--source", FP, "--target", Q1, "--eps", "0.1", "0.2", "inf"], "finite"),
]


@pytest.mark.parametrize("argv, words", CASES, ids=[" ".join(c[0])[:70] for c in CASES])
def test_bad_input_is_one_line_and_exit_2_before_any_work(argv, words, files, tmp_path, no_training, capsys):
    home = ["--home", str(tmp_path / "home")] if "--home" not in argv and argv[0] != "select" else []
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv] + home
    assert main(argv) == 2
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trend: error:") and "Traceback" not in err, err[-500:]
    assert words in lines[0] and len(lines[0]) < 400


def test_zoo_import_over_an_existing_model_needs_force_and_refuses_nan_and_int8(tmp_path, zoo_model, capsys):
    from safetensors.torch import save_file

    home = str(tmp_path / "home")
    state = {k: v.clone() for k, v in zoo_model(FP).state_dict().items()}
    good, nan, int8 = (tmp_path / f"{n}.safetensors" for n in ("good", "nan", "int8"))
    save_file(state, str(good))
    save_file(
        {
            k: v.fill_(float("nan")) if v.is_floating_point() else v
            for k, v in {k: v.clone() for k, v in state.items()}.items()
        },
        str(nan),
    )
    save_file({k: v.to(torch.int8) if v.is_floating_point() else v for k, v in state.items()}, str(int8))
    assert main(["zoo", "import", FP, str(good), "--home", home]) == 0
    capsys.readouterr()
    for path, words in ((good, "already in the zoo"), (nan, "non-finite"), (int8, "int8")):
        force = [] if path is good else ["--force"]
        assert main(["zoo", "import", FP, str(path), "--home", home, *force]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert main(["zoo", "import", FP, str(good), "--home", home, "--force"]) == 0


# ----------------------------------------------------------------------------- random input
VOCABULARY = [
    "train",
    "zoo",
    "list",
    "import",
    "delete",
    "clean",
    "preset",
    "digits",
    "eval",
    "transfer",
    "ensemble-attack",
    "select",
    "fit-tm",
    "boundary",
    "--models",
    "--model",
    "--attack",
    "pgd",
    "cw",
    "--eps",
    "--steps",
    "--limit",
    "--seed",
    "--tm",
    "-k",
    "--top",
    "--json",
    "--csv",
    "--force",
    "--index",
    "--resolution",
    "--source",
    "--target",
    "--home",
    "--device",
    "cpu",
    "cuda",
    "--help",
    FP,
    Q1,
    "digits/resnet18/FP/sgd/s0/e0",
    "0",
    "-1",
    "1e309",
    "nan",
    "3",
    "x",
    "",
]


@pytest.fixture
def quiet_engine(monkeypatch, tmp_path):
    """Random argument lists must not train or attack for real: both become a TrendError (exit 2)."""
    import trend_core.attacks.base as base
    import trend_core.training.train as train

    def refuse(*args, **kwargs):
        raise TrendError("work is disabled in this test")

    monkeypatch.setattr(train, "train_model", refuse)
    monkeypatch.setattr(base.Attack, "run", refuse)
    monkeypatch.setenv("TREND_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # a random relative --home lands here


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=12)), max_size=8))
def test_random_argument_lists_exit_0_or_2(quiet_engine, capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        code = exc.code
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=80),
        st.lists(
            st.one_of(
                st.sampled_from(
                    [
                        "digits",
                        "cifar10",
                        "resnet18-w0.25",
                        "vgg11_bn-w1e-9",
                        "FP",
                        "Q2",
                        "HT-FS-W2-A2",
                        "sgd",
                        "adam",
                        "s0",
                        "s" + "9" * 30,
                        "e0",
                        "e99999",
                        "lr-1",
                        "lrinf",
                        "pretrained",
                        "",
                    ]
                ),
                st.text(max_size=6),
            ),
            max_size=9,
        ).map("/".join),
    )
)
def test_random_spec_names_parse_or_raise_one_trend_error(name):
    try:
        spec = ModelSpec.parse(name)
    except TrendError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    assert ModelSpec.parse(spec.name) == spec and math.isfinite(spec.lr) and spec.epochs >= 1
