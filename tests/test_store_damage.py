"""Damage in the store, made by writing bytes into the real files: a damaged cache database is moved aside
with a warning, a cached value with flipped bytes is a miss with a warning, and damaged or half-written
model entries are reported and cleaned, never loaded."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import FP

from trend_core.cli import main
from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError
from trend_core.models.zoo import Zoo
from trend_core.storage.store import Store, StoreWarning


def _summary(seed: int = 0) -> dict:
    """A value shaped like a cached attack summary (per-image verdicts and norms of 359 test digits)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "clean_correct": torch.rand(359, generator=g) > 0.05,
        "success": torch.rand(359, generator=g) > 0.5,
        "l2": torch.rand(359, generator=g),
        "linf": torch.full((359,), 0.1),
    }


def _filled_store(root, count: int = 40) -> list[str]:
    store = Store(root)
    keys = [f"{i:064x}" for i in range(count)]
    for i, key in enumerate(keys):
        store.set(key, _summary(i))
    store.close()
    return keys


@pytest.mark.parametrize("damage", ["first 4 KiB overwritten", "truncated to half"])
def test_a_damaged_cache_database_is_moved_aside_with_a_warning(tmp_path, damage):
    keys = _filled_store(tmp_path)
    db = tmp_path / "cache" / "cache.db"
    data = bytearray(db.read_bytes())
    if damage.startswith("first"):
        data[:4096] = bytes(range(256)) * 16
    else:
        del data[len(data) // 2 :]
    db.write_bytes(bytes(data))
    with pytest.warns(StoreWarning, match="was damaged"):  # noqa: PT031  (a truncated file may open, then fail on a later page)
        store = Store(tmp_path)
        values = [store.get(key) for key in keys]
    assert all(v is None or torch.equal(v["l2"], _summary(i)["l2"]) for i, v in enumerate(values))
    store.set("fresh", _summary(7))  # the store goes on working
    assert torch.equal(store.get("fresh")["l2"], _summary(7)["l2"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("cache.damaged-")]
    store.close()


@pytest.mark.parametrize("size", ["small (in the database)", "large (in its own file)"])
def test_flipped_bytes_in_a_cached_value_are_a_miss_with_a_warning(tmp_path, size):
    from trend_core.storage.store import _seal, dumps

    value = _summary(3) if size.startswith("small") else {"x_adv": torch.rand(359, 1, 8, 64)}
    store = Store(tmp_path)
    store.set("k" * 64, value)
    store.close()
    payload = _seal(dumps(value))
    path, at = _find_on_disk(tmp_path / "cache", payload)
    data = bytearray(path.read_bytes())
    for offset in range(5):
        data[at + 40 * offset] ^= 0x5A
    path.write_bytes(bytes(data))
    store = Store(tmp_path)
    with pytest.warns(StoreWarning, match="failed its checksum"):
        assert store.get("k" * 64) is None
    assert not store.has("k" * 64)  # dropped, so the next run recomputes and stores it again
    store.close()


def _find_on_disk(folder, payload: bytes, window: int = 256):
    """(file, offset) of a 256-byte stretch of ``payload`` stored contiguously, once, in a file under ``folder``
    (SQLite splits a blob over pages, so the whole payload need not be contiguous)."""
    files = [(p, p.read_bytes()) for p in folder.rglob("*") if p.is_file()]
    for start in range(len(payload) // 2, len(payload) - window, window):
        piece = payload[start : start + window]
        hits = [(p, data.find(piece)) for p, data in files if data.count(piece) == 1]
        if len(hits) == 1:
            return hits[0]
    raise AssertionError("the stored value was not found on disk")


def _copy_model(test_zoo, zoo_model, home, name=FP) -> ModelSpec:
    zoo_model(name)
    spec = ModelSpec.parse(name)
    (home / "models").mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".safetensors"):
        shutil.copy2(test_zoo.models_dir / f"{spec.key}{suffix}", home / "models" / f"{spec.key}{suffix}")
    return spec


def test_unreadable_metadata_is_listed_as_damaged_and_never_loaded(tmp_path, test_zoo, zoo_model, capsys):
    spec = _copy_model(test_zoo, zoo_model, tmp_path)
    meta = tmp_path / "models" / f"{spec.key}.json"
    meta.write_bytes(meta.read_bytes()[:40])  # cut mid-file
    assert main(["zoo", "list", "--home", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"key {spec.key} is damaged or incomplete" in err and "trend zoo clean" in err
    assert main(["eval", FP, "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trend: error:") and "incomplete" in err and len(err.splitlines()) == 1
    assert main(["zoo", "clean", "--home", str(tmp_path)]) == 0
    assert Zoo(tmp_path).problems() == [] and not any((tmp_path / "models").glob(f"{spec.key}.*"))


def test_weights_that_differ_from_their_recorded_checksum_are_refused(tmp_path, zoo_model):
    zoo = Zoo(tmp_path)
    spec = ModelSpec.parse(FP)
    zoo.save(spec, zoo_model(FP), {"source": "copy"})
    weights = zoo.models_dir / f"{spec.key}.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit different
    weights.write_bytes(bytes(data))
    with pytest.raises(TrendError, match="damaged"):
        zoo.load(spec)


def test_weights_without_metadata_are_not_a_model(tmp_path, test_zoo, zoo_model, capsys):
    spec = _copy_model(test_zoo, zoo_model, tmp_path)
    (tmp_path / "models" / f"{spec.key}.json").unlink()
    zoo = Zoo(tmp_path)
    assert not zoo.has(spec) and zoo.list() == []
    assert [p["problem"] for p in zoo.problems()] == ["its weights file has no metadata (a save that was cut short)"]
    with pytest.raises(TrendError, match="incomplete"):
        zoo.load(spec)
    assert json.loads(json.dumps(zoo.clean()))[0]["key"] == spec.key and zoo.problems() == []
