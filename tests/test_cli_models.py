"""`trend train / zoo / eval`: real runs in a temporary store; bad input is one line on stderr and exit 2."""

import json
import shutil

import pytest

from trend_core.cli import main

TINY = "digits/smallcnn-w0.25/FP/sgd/s0/e2"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_list_eval_delete(tmp_path, capsys):
    home = str(tmp_path)
    code, _, err = run(capsys, "train", TINY, "--home", home, "--device", "cpu")
    assert code == 0 and "test accuracy" in err
    code, _, err = run(capsys, "train", TINY, "--home", home)
    assert code == 0 and "already in the zoo" in err
    code, out, _ = run(capsys, "zoo", "list", "--home", home, "--json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == [TINY]
    code, out, _ = run(capsys, "eval", "--home", home, "--json")
    table = json.loads(out)
    assert code == 0 and table[0]["name"] == TINY and 0 <= table[0]["test_acc_%"] <= 100
    code, out, _ = run(capsys, "eval", TINY, "--home", home)
    assert code == 0 and "test_acc_%" in out and "FP-SMALLCNN-s0" in out
    code, out, _ = run(capsys, "zoo", "delete", TINY, "--home", home)
    assert code == 0 and "deleted" in out
    code, out, _ = run(capsys, "zoo", "list", "--home", home)
    assert "empty" in out


def test_eval_lists_the_test_zoo_models(test_zoo, zoo_model, tmp_path, capsys):
    from conftest import FP, Q1

    zoo_model(FP), zoo_model(Q1)
    home = tmp_path / "home"
    shutil.copytree(test_zoo.models_dir, home / "models")
    code, out, _ = run(capsys, "eval", FP, Q1, "--home", str(home), "--json")
    rows = {r["label"]: r for r in json.loads(out)}
    assert code == 0 and rows["FP-s0"]["test_acc_%"] >= 95 and "Q1-s0" in rows


def test_import_refuses_a_hostile_file(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_bytes(b"\x80\x04\x95" + b"garbage" * 10)
    code, _, err = run(capsys, "zoo", "import", TINY, str(path), "--home", str(tmp_path))
    assert code == 2 and err.startswith("trend: error:") and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "digits/resnet99/FP/sgd/s0"], "Unknown architecture"),
        (["train", "digits/resnet18/Q9/sgd/s0"], "Unknown input quantization"),
        (["train", "digits/resnet18/FP-W0/sgd/s0"], "Weight bits"),
        (["eval", "digits/resnet18/FP/sgd/s0"], "not in the zoo"),
        (["zoo", "delete", "digits/resnet18/FP/sgd/s0"], "not in the zoo"),
        (["zoo", "import", TINY, "/nonexistent/file.pt"], "No weights file"),
        (["eval"], "empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    code, _, err = run(capsys, *argv, "--home", str(tmp_path))
    assert code == 2
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, _, err = run(capsys, "train", TINY, "--device", "cuda", "--home", str(tmp_path))
    assert code == 2 and "CUDA" in err
