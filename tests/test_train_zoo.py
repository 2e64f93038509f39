"""Training determinism, progress and cancellation; zoo save/load, import, hostile and damaged checkpoints."""

import os
import pickle
from pathlib import Path

import pytest
import torch

from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError
from trend_core.models.checkpoints import read_state_dict
from trend_core.models.zoo import Zoo, preset_specs
from trend_core.training.train import TrainingCancelled, train_model

TINY = ModelSpec.parse("digits/smallcnn-w0.25/Q2/sgd/s3/e2")


def test_training_is_deterministic_for_a_seed_and_differs_across_seeds():
    a = train_model(TINY, device="cpu")
    b = train_model(TINY, device="cpu")
    c = train_model(TINY.replace(seed=4), device="cpu")
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    assert a.test_acc == b.test_acc and 0 <= a.test_acc <= 1


def test_progress_callback_and_cancellation():
    reports = []
    result = train_model(TINY, device="cpu", progress=reports.append)
    assert [r.epoch for r in reports] == [1, 2]
    assert all(r.epochs == 2 and r.loss > 0 for r in reports)
    assert result.val_acc == max(r.val_acc for r in reports)  # best-validation weights are kept
    with pytest.raises(TrainingCancelled):
        train_model(TINY, device="cpu", cancel=lambda: True)


def test_zoo_save_load_round_trip_and_metadata(tmp_path):
    zoo = Zoo(tmp_path)
    model = zoo.get_or_train(TINY, device="cpu")
    assert zoo.has(TINY)
    loaded = zoo.load(TINY.name)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(model(x), loaded(x))
    meta = zoo.metadata(TINY)
    assert meta["name"] == TINY.name and meta["key"] == TINY.key
    assert 0 <= meta["test_acc"] <= 1 and meta["train_seconds"] > 0
    assert "torch" in meta["versions"]
    assert [m["name"] for m in zoo.list()] == [TINY.name]
    # no temporary files are left behind by the atomic writes
    files = sorted(p.suffix for p in (tmp_path / "models").iterdir() if p.name != ".locks")  # (per-model locks)
    assert files == [".json", ".safetensors"]
    assert zoo.delete(TINY) and not zoo.has(TINY)
    with pytest.raises(TrendError, match="not in the zoo"):
        zoo.load(TINY)


def test_import_state_dict_checks_shapes(tmp_path):
    zoo = Zoo(tmp_path)
    trained = train_model(TINY, device="cpu").model
    path = tmp_path / "mine.pt"
    torch.save(trained.net.state_dict(), path)  # a bare-network state_dict, as users have them
    meta = zoo.import_state_dict(TINY, path)
    assert meta["test_acc"] == pytest.approx(train_model(TINY, device="cpu").test_acc)
    wider = TINY.replace(width=0.5)
    with pytest.raises(
        TrendError,
        match=r"mine\.pt has the layers of \S+ but other shapes: \S+ is [0-9x]+ in the "
        r"file and [0-9x]+ in the spec",
    ):
        zoo.import_state_dict(wider, path)


def test_hostile_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"conv.weight": Exploit()}, handle)
    with pytest.raises(TrendError, match="refused|could not be read"):
        Zoo(tmp_path).import_state_dict(TINY, path)
    assert not marker.exists()
    with pytest.raises(TrendError):
        read_state_dict(path)
    assert not marker.exists()


def test_truncated_checkpoint_gets_a_clear_error(tmp_path):
    zoo = Zoo(tmp_path)
    zoo.get_or_train(TINY, device="cpu")
    weights = tmp_path / "models" / f"{TINY.key}.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(TrendError, match="damaged"):
        zoo.load(TINY)
    torch_file = tmp_path / "half.pt"
    torch.save({"w": torch.zeros(100)}, torch_file)
    torch_file.write_bytes(torch_file.read_bytes()[:50])
    with pytest.raises(TrendError):
        read_state_dict(torch_file)
    with pytest.raises(TrendError, match="No weights file"):
        read_state_dict(tmp_path / "missing.pt")


def test_digits_preset_lists_twelve_distinct_models():
    specs = preset_specs("digits")
    assert len(specs) == len({s.key for s in specs}) == 12
    labels = {s.short_name for s in specs}
    assert {
        "FP-s0",
        "Q8-s0",
        "Q4-s0",
        "Q2-s0",
        "Q1-s0",
        "HT-s0",
        "W2-s0",
        "A2-s0",
        "FP-adam-s0",
        "FP-s1",
        "FP-s2",
    } <= labels
    with pytest.raises(TrendError, match="digits"):
        preset_specs("cifar-everything")


def test_fp_test_models_reach_95_percent(zoo_model, test_zoo):
    from conftest import FP

    zoo_model(FP)
    assert test_zoo.metadata(FP)["test_acc"] >= 0.95


def test_store_root_follows_trend_home(trend_home):
    assert Zoo().root == Path(trend_home)
