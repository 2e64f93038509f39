"""The store folder is checked wherever it comes from (--home, $TREND_HOME, ``Zoo(root)``, ``cache=``), its parts
included (models/, cache/, cache.db), before any work: each problem is one sentence naming the folder, exit
status 2 or a TrendError, never a traceback after minutes of training. A cache that fails mid-run costs only the
caching; a failed write to stdout is one line. The dashboard's operator root never offers a folder outside it.

Every failure here is a real one of the file system: a file where a folder belongs, a symbolic link loop, a
folder made immutable with ``chattr +i`` (which stops root too; the tests that need it are skipped where it does
not work and the process is root, since chmod would not stop root), a full device (/dev/full), a closed pipe."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FP, Q1, REPO

from trend_core.cli import main
from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError
from trend_core.models.zoo import Zoo
from trend_core.storage.store import MemoryStore, Store, StoreWarning, get_store

TINY = "digits/smallcnn-w0.25/FP/sgd/s0/e1"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def no_work(monkeypatch):
    """Any training or attack would be work done before the store folder was checked: it fails the test."""
    import trend_core.attacks.base as base
    import trend_core.training.many as train_many
    import trend_core.training.train as train

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the store folder was checked")

    monkeypatch.setattr(train, "train_model", refuse)
    # seam: the CLI's train command reaches train_many's own train_loop, past train_model; the CLI has no hook
    # that says training started, and an unwritable folder would fail it anyway, only later
    monkeypatch.setattr(train_many, "train_loop", refuse)
    monkeypatch.setattr(base.Attack, "run", refuse)


@contextlib.contextmanager
def unwritable(path: Path):
    """``path`` (a folder) made unwritable for real while the block runs: immutable (chattr +i, which stops root
    too), else read-only by its mode when this process is not root."""
    if subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True).returncode == 0:
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    elif os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
    else:
        pytest.skip("chattr +i does not work here, and as root a read-only mode stops nothing")


def _one_error(capsys, *words) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trend: error:") and "Traceback" not in err, err[-600:]
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.fixture
def odd(tmp_path) -> dict[str, Path]:
    """A plain file and a symbolic link that loops, to be named as store folders."""
    made = {"file": tmp_path / "a-file", "loop": tmp_path / "loop"}
    made["file"].write_text("not a folder")
    made["loop"].symlink_to(made["loop"])
    return made


@pytest.mark.parametrize("kind, words", [("file", "is a file"), ("loop", "leads nowhere")])
def test_a_trend_home_that_is_no_folder_is_an_error_not_an_empty_zoo(odd, monkeypatch, capsys, no_work, kind, words):
    monkeypatch.setenv("TREND_HOME", str(odd[kind]))
    for argv in (["zoo", "list"], ["eval"], ["train", TINY], ["zoo", "preset", "digits"]):
        assert main(argv) == 2
        _one_error(capsys, str(odd[kind]), "$TREND_HOME", words)
    with pytest.raises(TrendError, match=words):
        Zoo()
    with pytest.raises(TrendError, match=words):
        Zoo(odd[kind]).list()


def test_a_home_whose_models_folder_is_a_file_fails_before_training(tmp_path, capsys, no_work):
    (tmp_path / "models").write_text("")
    for argv in (["zoo", "list"], ["train", TINY], ["transfer", "--models", FP, Q1]):
        assert main([*argv, "--home", str(tmp_path)]) == 2
        _one_error(capsys, f"{tmp_path / 'models'} is a file, not a folder")
    (tmp_path / "models").unlink()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / ".locks").write_text("")
    assert main(["train", TINY, "--home", str(tmp_path)]) == 2
    _one_error(capsys, ".locks is a file, not a folder")


def test_an_immutable_trend_home_fails_before_training(tmp_path, monkeypatch, capsys, no_work):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("TREND_HOME", str(home))
    with unwritable(home):
        assert main(["train", TINY]) == 2
        _one_error(capsys, str(home), "$TREND_HOME", "may not write")
        assert main(["zoo", "list"]) == 0  # reading needs no writing
        assert "is empty" in capsys.readouterr().out


def test_an_immutable_models_folder_fails_train_import_and_get_or_train_before_work(
    tmp_path, zoo_model, capsys, no_work
):
    from safetensors.torch import save_file

    weights = tmp_path / "fp.safetensors"
    save_file(zoo_model(FP).state_dict(), str(weights))
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    with unwritable(home / "models"):
        for argv in (["train", TINY], ["zoo", "import", FP, str(weights)]):
            assert main([*argv, "--home", str(home)]) == 2
            _one_error(capsys, f"may not write in {home / 'models'}")
        with pytest.raises(TrendError, match="may not write in"):
            Zoo(home).get_or_train(TINY, device="cpu")
        with pytest.raises(TrendError, match="may not write in"):
            Zoo(home).train_many([TINY], device="cpu")
        with pytest.raises(TrendError, match="may not write in"):
            Zoo(home).import_state_dict(FP, weights)
    assert not any((home / "models").iterdir())


def test_the_operator_root_never_offers_a_folder_outside_it(tmp_path, monkeypatch):
    from trend_core.storage.homes import home_in_root, known_homes

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "team").mkdir(parents=True)
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "alias").symlink_to(root / "team")  # a link that stays inside is fine
    (root / "nowhere").symlink_to(root / "nowhere")
    monkeypatch.setenv("TREND_HOME_ROOT", str(root))
    monkeypatch.setenv("TREND_HOME", str(tmp_path / "default"))
    offered = [p.resolve() for p in known_homes()]
    assert outside not in offered and (root / "team") in offered
    with pytest.raises(TrendError, match="leads out of"):
        home_in_root("escape")
    assert home_in_root("alias") == root / "alias" and home_in_root("new") == root / "new"
    with pytest.raises(TrendError, match="leads out of|leads nowhere"):
        home_in_root("nowhere")


@pytest.fixture
def linked_home(tmp_path, test_zoo, zoo_model) -> Path:
    """A store folder holding copies of the trained FP and Q1 test models (and no cache yet)."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    for name in (FP, Q1):
        zoo_model(name)
        for suffix in (".json", ".safetensors"):
            shutil.copy2(test_zoo.models_dir / f"{ModelSpec.parse(name).key}{suffix}", home / "models")
    return home


@pytest.mark.parametrize("damage", ["cache is a file", "cache.db is a folder"])
def test_a_damaged_cache_layout_fails_before_the_attack(linked_home, capsys, no_work, damage):
    if damage == "cache is a file":
        (linked_home / "cache").write_text("")
        words = f"{linked_home / 'cache'} is a file, not a folder"
    else:
        (linked_home / "cache" / "cache.db").mkdir(parents=True)
        words = "cache.db is a folder, not a file"
    assert main(["transfer", "--models", FP, Q1, "--limit", "20", "--home", str(linked_home)]) == 2
    _one_error(capsys, words)
    with pytest.raises(TrendError, match="is a"):
        Store(linked_home)


def test_run_transfer_with_a_file_as_cache_names_the_argument(odd, zoo_model):
    from trend_core.experiments.transfer import run_transfer

    with pytest.raises(TrendError, match=r"\(cache=\) cannot be used: it is a file"):
        run_transfer([zoo_model(FP), zoo_model(Q1)], "pgd", limit=8, cache=odd["file"])
    with pytest.raises(TrendError, match="leads nowhere"):
        get_store(odd["loop"])


def test_a_cache_made_read_only_mid_run_costs_only_the_caching(linked_home, zoo_model):
    from trend_core.attacks.registry import make_attack
    from trend_core.experiments.transfer import run_transfer

    models, attack = [zoo_model(FP), zoo_model(Q1)], make_attack("pgd", eps=0.1, steps=5)
    cache = linked_home / "cache"  # 200 images: the adversarial images go to files of their own, not SQLite
    frozen: list[Path] = []

    def freeze(
        fraction, message
    ) -> None:  # after the first piece of work: no new file can be made in the cache any more
        if not frozen:
            folders = [cache, *(d for d in cache.rglob("*") if d.is_dir())]
            for folder in folders:
                if subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True).returncode:
                    pytest.skip("chattr +i does not work here")
                frozen.append(folder)

    try:
        with pytest.warns(StoreWarning, match="goes on without it"):
            result = run_transfer(models, attack, limit=200, cache=Store(linked_home), progress=freeze)
    finally:
        for folder in frozen:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert frozen
    expected = run_transfer(models, attack, limit=200, cache=MemoryStore())
    assert torch.allclose(torch.tensor(result.matrix().values), torch.tensor(expected.matrix().values))


def _trend(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trend_core", *argv], env=ENV, cwd=REPO, text=True, check=False, timeout=300, **kwargs
    )


@pytest.mark.parametrize("argv", [["zoo", "list", "--json"], ["eval", FP, Q1, "--json"]])
def test_output_to_a_full_device_is_one_line(linked_home, argv):
    with open("/dev/full", "w") as full:
        done = _trend([*argv, "--home", str(linked_home)], stdout=full, stderr=subprocess.PIPE)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-800:]
    assert lines[0].startswith("trend: error: Writing the output failed (No space left on device)")


def test_output_to_a_closed_pipe_ends_quietly(linked_home):
    proc = subprocess.Popen(
        [sys.executable, "-m", "trend_core", "zoo", "list", "--json", "--home", str(linked_home)],
        env=ENV,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader is gone before the first byte (as `| head -c 0`)
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141 and err == "", err[-800:]
