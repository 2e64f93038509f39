"""Damaged or half-written imported networks (models/user/<dataset>/, #21) are reported by ``Zoo.problems()`` and
`trend zoo list`, and removed by ``Zoo.clean()`` / `trend zoo clean` as zoo checkpoints are; a network that loads
and files an import did not write are left untouched."""

from __future__ import annotations

import json

import pytest
from defender_support import linear_program

from trend_core.cli import main
from trend_core.errors import TrendError
from trend_core.models.zoo import Zoo


@pytest.fixture(scope="module")
def program(tmp_path_factory, digits):
    return linear_program(digits, tmp_path_factory.mktemp("programs") / "lin.pt2")


@pytest.fixture
def damaged(trend_home, program):
    """Five imported networks, four of them damaged on disk the ways a crash, a full disk or a hand edit do."""
    zoo = Zoo()
    for slug in ("ok", "truncated", "garbled", "no-meta", "no-program"):
        zoo.import_program(f"user/digits/{slug}", program)
    folder = trend_home / "models" / "user" / "digits"
    data = (folder / "truncated.pt2").read_bytes()
    (folder / "truncated.pt2").write_bytes(data[: len(data) // 2])
    (folder / "garbled.json").write_bytes(b'{"name": "user/digits/garbled", "orig')
    (folder / "no-meta.json").unlink()
    (folder / "no-program.pt2").unlink()
    (folder / ".ok.pt2.new.k3x9_q.tmp").write_bytes(data[:100])  # an import's temporary file, cut short
    (folder / "ok.pt2.new").write_bytes(data)  # a pending program whose metadata was never written
    (folder / "notes.txt").write_text("the defender's own notes")  # not the zoo's: never reported or removed
    (folder / "theirs.json").write_text(json.dumps({"hello": "a user's JSON, not an import's"}))
    return folder


def test_problems_name_each_damaged_network_and_what_clean_removes(damaged):
    problems = {p["name"]: p for p in Zoo().problems()}
    assert set(problems) == {
        f"user/digits/{s}" for s in ("ok", "truncated", "garbled", "no-meta", "no-program", "theirs")
    }
    expected = {
        "truncated": ("sha256 differs", ["truncated.json", "truncated.pt2"]),
        "garbled": ("metadata is damaged", ["garbled.json", "garbled.pt2"]),
        "no-meta": ("has no metadata", ["no-meta.pt2"]),
        "no-program": ("program file is missing", ["no-program.json"]),
        "ok": ("leftovers of an interrupted import", [".ok.pt2.new.k3x9_q.tmp", "ok.pt2.new"]),
        "theirs": ("not that of user/digits/theirs", []),  # a user's JSON: reported, never removed
    }
    for slug, (words, files) in expected.items():
        row = problems[f"user/digits/{slug}"]
        assert words in row["problem"] and row["key"] == f"user-digits-{slug}", row
        assert sorted(p.rsplit("/", 1)[-1] for p in row["files"]) == sorted(files), row
    with pytest.raises(TrendError, match="damaged in the zoo"):
        Zoo().load("user/digits/truncated")


def test_clean_removes_the_damage_and_keeps_what_loads(damaged, capsys):
    ok_before = {p: (damaged / p).read_bytes() for p in ("ok.pt2", "ok.json")}
    assert main(["zoo", "list"]) == 0
    err = capsys.readouterr().err
    assert "key user-digits-truncated (user/digits/truncated) is damaged or incomplete" in err
    assert "`trend zoo clean` removes it" in err
    assert main(["zoo", "clean"]) == 0
    captured = capsys.readouterr()
    removed = [line.split()[1] for line in captured.out.splitlines()]
    assert sorted(removed) == sorted(
        f"user/digits/{s}" for s in ("ok", "truncated", "garbled", "no-meta", "no-program")
    )
    assert (
        "left alone: key user-digits-theirs" in captured.err
        and "5 damaged or incomplete entries removed" in captured.err
    )
    left = sorted(p.name for p in damaged.iterdir())
    assert left == ["notes.txt", "ok.json", "ok.pt2", "theirs.json"]
    assert {p: (damaged / p).read_bytes() for p in ok_before} == ok_before  # the sound network is untouched
    zoo = Zoo()
    assert [p["name"] for p in zoo.problems()] == ["user/digits/theirs"] and zoo.clean() == []
    assert zoo.load("user/digits/ok")(_batch()).shape == (2, 10)  # it loads and runs
    assert [m["name"] for m in zoo.list(imported_networks=True)] == ["user/digits/ok"]


def test_an_import_cut_between_its_renames_is_finished_not_reported(trend_home, program):
    zoo = Zoo()
    zoo.import_program("user/digits/cut", program)
    folder = trend_home / "models" / "user" / "digits"
    (folder / "cut.json").rename(folder / "cut.json.new")  # the program is in place, its metadata still pending
    assert zoo.problems() == [] and zoo.clean() == []
    assert (folder / "cut.json").exists() and zoo.has("user/digits/cut")


def _batch():
    import torch

    return torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
