"""The results store: content keys, model fingerprints, safe round trips, persistence and sharing."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import diskcache
import pandas as pd
import pytest
import torch
import torch.nn as nn

from trend_core.storage.store import MemoryStore, Store, content_key, get_store, model_fingerprint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- content keys
def test_content_key_is_stable_and_content_sensitive():
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    key = content_key("attack", {"eps": 0.1, "steps": 40}, x)
    assert key == content_key("attack", {"steps": 40, "eps": 0.1}, x.clone())  # dict order, tensor identity
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != content_key("attack", {"eps": 0.1, "steps": 40}, x + 1e-6 * (x == 0))  # one element differs
    assert key != content_key("attack", {"eps": 0.1, "steps": 40}, x.double())  # dtype
    assert key != content_key("attack", {"eps": 0.1, "steps": 40}, x.reshape(3, 2))  # shape
    assert content_key(1) != content_key(1.0) != content_key("1") and content_key(None) != content_key("None")
    assert content_key(x[:, 1]) == content_key(x[:, 1].contiguous())  # a strided view hashes its values
    with pytest.raises(TypeError):
        content_key(object())


def test_content_key_is_the_same_in_another_process():
    parts = ("pgd", {"eps": 0.1, "seed": 3}, [1, 2.5, None, True])
    tensor = torch.linspace(0, 1, 17)
    code = textwrap.dedent("""
        import torch
        from trend_core.storage.store import content_key
        print(content_key("pgd", {"seed": 3, "eps": 0.1}, [1, 2.5, None, True], torch.linspace(0, 1, 17)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == content_key(*parts, tensor)


# ----------------------------------------------------------------------------- fingerprints
def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def test_fingerprint_follows_the_weights():
    net, twin, other = small_net(0), small_net(0), small_net(1)
    fp = model_fingerprint(net)
    assert fp == model_fingerprint(twin) != model_fingerprint(other)
    assert model_fingerprint(net) == fp  # asked again (served from the module's cache): the same
    with torch.no_grad():
        net[0].weight[0, 0] += 1.0  # in place, as an optimizer step does
    changed = model_fingerprint(net)
    assert changed != fp
    net.load_state_dict(twin.state_dict())
    assert model_fingerprint(net) == fp
    net[1].running_mean.add_(0.5)  # buffers count too
    assert model_fingerprint(net) != fp


def test_fingerprint_includes_the_spec_name_and_structure():
    class Named(nn.Module):
        def __init__(self, spec_name):
            super().__init__()
            self.linear = small_net(0)[0]
            self.spec = type("Spec", (), {"name": spec_name})()

    assert model_fingerprint(Named("a")) != model_fingerprint(Named("b"))
    assert model_fingerprint(nn.ReLU()) != model_fingerprint(nn.Tanh())  # no weights, different functions


def test_zoo_models_have_distinct_fingerprints(zoo_model):
    from conftest import FP, Q1

    fp = model_fingerprint(zoo_model(Q1))
    assert fp == model_fingerprint(zoo_model(Q1)) != model_fingerprint(zoo_model(FP))


# ----------------------------------------------------------------------------- store
def sample_values() -> dict:
    frame = pd.DataFrame(
        {"tm": [1.0, float("nan")], "generated": [3, 0], "ok": [True, False]},
        index=pd.Index(["FP-s0", "Q2-s0"], name="source"),
    )
    return {
        "tensor": torch.randn(3, 1, 8, 8),
        "dict": {"success": torch.tensor([True, False]), "l2": torch.rand(2), "n": 5, "name": "pgd", "eps": None},
        "frame": frame,
        "nested": {"table": frame, "rows": [1, 2.5, "x"]},
    }


@pytest.mark.parametrize("make", [lambda tmp: Store(tmp), lambda tmp: MemoryStore()], ids=["disk", "memory"])
def test_round_trips(tmp_path, make):
    store = make(tmp_path)
    values = sample_values()
    for key, value in values.items():
        assert not store.has(key)
        store.set(key, value)
        assert store.has(key)
    assert torch.equal(store.get("tensor"), values["tensor"])
    got = store.get("dict")
    assert torch.equal(got["success"], values["dict"]["success"]) and got["n"] == 5 and got["eps"] is None
    pd.testing.assert_frame_equal(store.get("frame"), values["frame"])
    pd.testing.assert_frame_equal(store.get("nested")["table"], values["frame"])
    assert store.get("nested")["rows"] == [1, 2.5, "x"]
    assert store.get("missing", "default") == "default"
    assert store.delete("tensor") and not store.has("tensor") and not store.delete("tensor")
    with pytest.raises(TypeError):
        store.set("bad", object())


def test_a_view_is_stored_without_its_base(tmp_path):
    store = Store(tmp_path)
    base = torch.zeros(100_000)
    store.set("view", base[:10])
    assert store.get("view").untyped_storage().nbytes() == 10 * 4


def test_store_persists_under_home_cache(trend_home):
    store = get_store()
    assert store.directory == trend_home / "cache"
    assert get_store() is store and get_store(trend_home) is store
    store.set("k", torch.ones(2))
    reopened = Store(trend_home)
    assert torch.equal(reopened.get("k"), torch.ones(2))


evil_calls: list = []


def evil() -> None:  # what a hostile pickle would run
    evil_calls.append(1)


class Hostile:
    def __reduce__(self):
        return (evil, ())


def test_foreign_pickles_are_never_executed(tmp_path):
    store = Store(tmp_path)
    diskcache.Cache(str(store.directory)).set("key", pickle.dumps(Hostile()))  # planted by another program
    assert store.get("key", "miss") == "miss"
    assert evil_calls == [] and not store.has("key")  # the unreadable entry is dropped


def test_a_damaged_file_is_a_miss(tmp_path):
    store = Store(tmp_path)
    store.set("big", torch.randn(100_000))  # large values live in their own file
    files = [p for p in store.directory.rglob("*.val")]
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes()[:1000])
    assert store.get("big") is None and not store.has("big")


def test_two_processes_share_one_store(tmp_path):
    code = textwrap.dedent("""
        import sys, torch
        from trend_core.storage.store import Store
        store = Store(sys.argv[1])
        for i in range(20):
            store.set(f"{sys.argv[2]}-{i}", torch.full((1000,), float(i)))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), name], cwd=REPO) for name in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = Store(tmp_path)
    assert len(store) == 40
    assert all(torch.equal(store.get(f"{n}-{i}"), torch.full((1000,), float(i))) for n in "ab" for i in range(20))
