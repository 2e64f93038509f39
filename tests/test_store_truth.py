"""The zoo tells the truth about its entries: an entry is listed, loaded and kept only when its metadata names its
own key and its weights are the ones recorded; `zoo list` reports the rest with a reason, `zoo clean` removes
exactly those (and never a file this project did not write); an import whose outputs are NaN is refused.
Every case is made with real files, as a copy between stores or a damaged disk makes it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import FP, Q1
from safetensors.torch import save_file

from trend_core.cli import main
from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError
from trend_core.models.zoo import Zoo

FP_KEY, Q1_KEY = ModelSpec.parse(FP).key, ModelSpec.parse(Q1).key


@pytest.fixture
def home(tmp_path, test_zoo, zoo_model):
    """A store folder holding copies of the trained FP and Q1 test models."""
    for name in (FP, Q1):
        zoo_model(name)
    (tmp_path / "models").mkdir()
    for key in (FP_KEY, Q1_KEY):
        for suffix in (".json", ".safetensors"):
            shutil.copy2(test_zoo.models_dir / f"{key}{suffix}", tmp_path / "models")
    return tmp_path


def _swap(a, b) -> None:
    a.rename(a.with_name("swap.tmp"))
    b.rename(a)
    a.with_name("swap.tmp").rename(b)


def _files(home) -> list[str]:
    return sorted(p.name for p in (home / "models").iterdir() if p.is_file())


def _list(home, capsys) -> tuple[list[str], list[str]]:
    """(names listed, warning lines) of `trend zoo list --json`, which must exit 0."""
    assert main(["zoo", "list", "--json", "--home", str(home)]) == 0
    out, err = capsys.readouterr()
    return [m["name"] for m in json.loads(out)], [line for line in err.splitlines() if line.startswith("warning:")]


def test_a_healthy_zoo_lists_and_loads_both_models(home, capsys):
    assert _list(home, capsys) == ([FP, Q1], [])
    assert Zoo(home).problems() == [] and Zoo(home).load(Q1).spec.name == Q1


def test_two_entries_stored_under_each_other_s_key_are_refused_everywhere(home, capsys):
    for suffix in (".json", ".safetensors"):  # a restore with the names mixed up: each entry complete
        _swap(home / "models" / f"{FP_KEY}{suffix}", home / "models" / f"{Q1_KEY}{suffix}")
    listed, warnings = _list(home, capsys)
    assert listed == [] and len(warnings) == 2
    assert all("that of another model" in w and "mixed up" in w for w in warnings)
    for argv in (["eval", FP, Q1], ["transfer", "--models", FP, Q1, "--limit", "20", "--no-cache"]):
        assert main([*argv, "--home", str(home)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("trend: error: Model ") and "another model" in err and len(err.splitlines()) == 1
    with pytest.raises(TrendError, match="another model"):
        Zoo(home).metadata(FP)
    assert main(["train", FP, "--home", str(home)]) == 2  # not "already in the zoo"
    err = capsys.readouterr().err.strip()
    assert "but damaged" in err and "--force retrains it" in err and len(err.splitlines()) == 1
    assert main(["zoo", "list", "--home", str(home)]) == 0
    assert "holds no model that loads" in capsys.readouterr().out
    assert main(["zoo", "clean", "--home", str(home)]) == 0
    assert _files(home) == [] and Zoo(home).problems() == []


@pytest.mark.parametrize("damage", ["weights files swapped", "weights overwritten with zeros", "metadata copied"])
def test_what_load_refuses_is_listed_as_damaged_and_cleaned(home, capsys, damage):
    models = home / "models"
    if damage == "weights files swapped":
        _swap(models / f"{FP_KEY}.safetensors", models / f"{Q1_KEY}.safetensors")
        damaged, reason = [FP_KEY, Q1_KEY], "sha256 differs"
    elif damage == "weights overwritten with zeros":
        weights = models / f"{FP_KEY}.safetensors"
        weights.write_bytes(bytes(weights.stat().st_size))
        damaged, reason = [FP_KEY], "sha256 differs"
    else:  # FP's metadata over Q1's: Q1 was listed as a second FP
        shutil.copy2(models / f"{FP_KEY}.json", models / f"{Q1_KEY}.json")
        damaged, reason = [Q1_KEY], "that of another model"
    listed, warnings = _list(home, capsys)
    healthy = [n for n, k in ((FP, FP_KEY), (Q1, Q1_KEY)) if k not in damaged]
    assert listed == healthy and len(warnings) == len(damaged)
    assert all(reason in w and "trend zoo clean" in w for w in warnings)
    for key in damaged:
        name = FP if key == FP_KEY else Q1
        with pytest.raises(TrendError, match="damaged or incomplete"):
            Zoo(home).load(name)
    assert main(["zoo", "clean", "--home", str(home)]) == 0
    removed = capsys.readouterr().out.splitlines()
    assert len(removed) == len(damaged) and all(line.startswith("removed ") for line in removed)
    assert _files(home) == [
        f"{k}{s}" for k in sorted({FP_KEY, Q1_KEY} - set(damaged)) for s in (".json", ".safetensors")
    ]
    assert _list(home, capsys) == (healthy, [])  # what is left loads
    for name in healthy:
        Zoo(home).load(name)


def test_zoo_clean_keeps_files_this_project_did_not_write(home, capsys):
    models = home / "models"
    (models / "backup.json").write_text('{"my": "notes"}')
    (models / "README.txt").write_text("my notes")
    (models / f"{'0' * 16}.json").write_text('{"not": "a model"}')  # a key's name, but a user's JSON
    weights = models / f"{FP_KEY}.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))  # and one entry damaged, which clean does remove
    listed, warnings = _list(home, capsys)
    assert listed == [Q1] and len(warnings) == 2 and any("not this project's" in w for w in warnings)
    assert main(["zoo", "clean", "--home", str(home)]) == 0
    out, err = capsys.readouterr()
    assert out.count("removed ") == 1 and "left alone" in err
    assert _files(home) == sorted(
        ["README.txt", "backup.json", f"{'0' * 16}.json", f"{Q1_KEY}.json", f"{Q1_KEY}.safetensors"]
    )


def test_metadata_without_a_key_field_is_checked_through_its_spec(home):
    """Metadata written without the key field (hand-made, or by an older tool) is verified by the key of the
    spec it names: it loads where that key is its own, and is refused under another model's name."""
    models = home / "models"
    for key in (FP_KEY, Q1_KEY):
        meta = json.loads((models / f"{key}.json").read_text())
        del meta["key"]
        (models / f"{key}.json").write_text(json.dumps(meta))
    assert [m["name"] for m in Zoo(home).list()] == [FP, Q1]
    shutil.copy2(models / f"{FP_KEY}.json", models / f"{Q1_KEY}.json")
    with pytest.raises(TrendError, match="another model"):
        Zoo(home).load(Q1)


def test_a_leftover_of_an_interrupted_save_is_removed_but_not_the_model(home):
    models = home / "models"
    leftover = models / f".{FP_KEY}.safetensors.new.abc123.tmp"
    leftover.write_bytes(b"half a checkpoint")
    (problem,) = Zoo(home).problems()
    assert problem["key"] == FP_KEY and problem["files"] == [str(leftover)] and "leftovers" in problem["problem"]
    assert [e["files"] for e in Zoo(home).clean()] == [[str(leftover)]]
    assert [m["name"] for m in Zoo(home).list()] == [FP, Q1]


def _nan_weights(state: dict, how: str) -> dict:
    if how == "BatchNorm running_var = -1":
        return {k: torch.full_like(v, -1.0) if k.endswith("running_var") else v for k, v in state.items()}
    return {
        k: torch.full_like(v, 3e38) if v.is_floating_point() and "running" not in k else v for k, v in state.items()
    }


@pytest.mark.parametrize("how", ["BatchNorm running_var = -1", "weights of 3e38"])
def test_an_import_whose_outputs_are_not_finite_is_refused_and_nothing_written(tmp_path, zoo_model, capsys, how):
    state = {k: v.clone() for k, v in zoo_model(FP).state_dict().items()}
    weights = _nan_weights(state, how)
    assert all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())
    path = tmp_path / "odd.safetensors"
    save_file(weights, str(path))
    home = tmp_path / "home"
    assert main(["zoo", "import", FP, str(path), "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip()
    assert "non-finite outputs" in err and "odd.safetensors" in err and len(err.splitlines()) == 1
    assert not (home / "models").exists() or not any((home / "models").glob("*.safetensors"))
    save_file(state, str(path))  # the same file with the trained values imports
    assert main(["zoo", "import", FP, str(path), "--home", str(home)]) == 0
    assert float(capsys.readouterr().out.split("test accuracy ")[1].rstrip(")\n")) > 0.9
