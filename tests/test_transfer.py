"""Transfer runs: exact TM counts on hand-built models, caching, resume, several eps, seed-group tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

from trend_core.attacks import PGD, predict
from trend_core.attacks.base import Attack
from trend_core.errors import TrendError
from trend_core.experiments.transfer import run_transfer
from trend_core.experiments.transfer_keys import TransferCancelled
from trend_core.experiments.transfer_result import TransferResult
from trend_core.experiments.transfer_tables import cross_table, model_groups, seed_group_table
from trend_core.storage.store import MemoryStore, Store, content_key


# ----------------------------------------------------------------------------- hand-built models and attack
class ThresholdRule(nn.Module):
    """Two classes; class 1 iff x[coord] > 0.5 (a linear layer with fixed weights). Counts forward calls."""

    def __init__(self, name: str, coord: int):
        super().__init__()
        self.name = name
        self.linear = nn.Linear(2, 2)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[1, coord] = 1.0
            self.linear.bias.copy_(torch.tensor([0.0, -0.5]))
        self.forward_calls = 0

    def forward(self, x):
        self.forward_calls += 1
        return self.linear(x)


class ScriptedAttack(Attack):
    """A minimum-norm 'attack' whose adversarial images are given per model name; records which models it ran on."""

    name = "scripted"
    minimum_norm = True

    def __init__(self, table: dict[str, torch.Tensor], fail_on: str | None = None):
        super().__init__(None)
        self.script = content_key(table)  # part of params(): a different script is a different attack
        self._table, self._fail_on, self._calls = table, fail_on, []

    def perturb(self, model, x, y, eps, generator):
        if model.name == self._fail_on:
            raise RuntimeError("interrupted")
        self._calls.append(model.name)
        return self._table[model.name].to(x.device)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# Images (x0, x1) and labels. A says 1 iff x0 > 0.5, B says 1 iff x1 > 0.5.
X = t([[0.8, 0.8], [0.2, 0.2], [0.8, 0.2], [0.2, 0.8], [0.8, 0.8], [0.2, 0.2], [0.2, 0.2]])
Y = torch.tensor([1, 0, 1, 1, 1, 0, 1])
# A right on {0,1,2,4,5}; B right on {0,1,3,4,5}; both right (common) on {0,1,4,5}.
ADV = {
    # attacking A fools A on {0,1,2,5}; of the common ones {0,1,5}, B is fooled on {0,5}.
    "A": t([[0.2, 0.2], [0.8, 0.2], [0.2, 0.2], [0.2, 0.8], [0.8, 0.8], [0.8, 0.8], [0.2, 0.2]]),
    # attacking B fools B on {0,1,3,4}; of the common ones {0,1,4}, A is fooled on {4}.
    "B": t([[0.8, 0.2], [0.2, 0.8], [0.8, 0.2], [0.2, 0.2], [0.2, 0.2], [0.2, 0.2], [0.2, 0.2]]),
}


def pair_models():
    return [ThresholdRule("A", 0), ThresholdRule("B", 1)]


def row(result: TransferResult, s: str, tt: str) -> dict:
    frame = result.long()
    return frame[(frame.source == s) & (frame.target == tt)].iloc[0].to_dict()


# ----------------------------------------------------------------------------- exact counts
def test_tm_counts_exact_on_hand_built_pair():
    result = run_transfer(pair_models(), ScriptedAttack(ADV), data=(X, Y), cache=None, device="cpu")
    ab, ba, aa, bb = row(result, "A", "B"), row(result, "B", "A"), row(result, "A", "A"), row(result, "B", "B")
    assert (ab["n_common"], ab["generated"], ab["transferred"]) == (4, 3, 2)
    assert (ba["n_common"], ba["generated"], ba["transferred"]) == (4, 3, 1)
    assert ab["tm"] == pytest.approx(2 / 3) and ba["tm"] == pytest.approx(1 / 3)
    # the diagonal: all of a source's correct images, TM 1
    assert (aa["n_common"], aa["generated"], aa["transferred"], aa["tm"]) == (5, 4, 4, 1.0)
    assert (bb["n_common"], bb["generated"], bb["transferred"], bb["tm"]) == (5, 4, 4, 1.0)
    # mean norms over A's generated images {0, 1, 5}: moves of (0.6, 0.6), (0.6, 0), (0.6, 0.6)
    assert ab["mean_l2"] == pytest.approx((2 * 0.6 * math.sqrt(2) + 0.6) / 3, abs=1e-6)
    assert ab["mean_linf"] == pytest.approx(0.6, abs=1e-6)
    assert result.warnings == []


def test_matrix_has_averages_without_the_diagonal():
    result = run_transfer(pair_models(), ScriptedAttack(ADV), data=(X, Y), cache=None, device="cpu")
    m = result.matrix()
    assert list(m.index) == ["A", "B", "col_avg"] and list(m.columns) == ["A", "B", "row_avg"]
    assert m.at["A", "A"] == 1.0 and m.at["B", "B"] == 1.0
    assert m.at["A", "row_avg"] == pytest.approx(2 / 3) and m.at["B", "row_avg"] == pytest.approx(1 / 3)
    assert m.at["col_avg", "A"] == pytest.approx(1 / 3) and m.at["col_avg", "B"] == pytest.approx(2 / 3)
    assert m.at["col_avg", "row_avg"] == pytest.approx(0.5)
    counts = result.matrix("transferred", averages=False)
    assert counts.loc["A", "B"] == 2 and counts.loc["B", "A"] == 1


def test_examples_split_generated_images_by_transfer():
    result = run_transfer(pair_models(), ScriptedAttack(ADV), data=(X, Y), cache=None, device="cpu")
    ex = result.examples("A", "B")
    assert ex.indices.tolist() == [0, 1, 5]
    assert ex.transferred_indices.tolist() == [0, 5] and ex.resisted_indices.tolist() == [1]
    assert torch.equal(ex.clean, X[[0, 1, 5]]) and torch.equal(ex.adv, ADV["A"][[0, 1, 5]])
    assert ex.target_pred.tolist() == [0, 0, 1] and ex.source_pred.tolist() == [0, 1, 1]
    with pytest.raises(TrendError):
        result.examples("A", "C")


def test_json_and_long_form_agree():
    import json

    result = run_transfer(pair_models(), ScriptedAttack(ADV), data=(X, Y), cache=None, device="cpu")
    data = json.loads(result.to_json())
    assert data["tm"]["A"]["B"] == pytest.approx(2 / 3) and data["row_avg"]["B"] == pytest.approx(1 / 3)
    assert len(data["pairs"]) == 4 and data["n_images"] == 7


def test_sources_and_targets_subsets():
    models = pair_models()
    result = run_transfer(
        models, ScriptedAttack(ADV), data=(X, Y), cache=None, device="cpu", sources=["B"], targets=[models[0]]
    )
    assert result.sources == ["B"] and result.targets == ["A"]
    assert list(result.matrix().columns) == ["A", "row_avg"]
    assert row(result, "B", "A")["transferred"] == 1
    with pytest.raises(TrendError):
        run_transfer(models, ScriptedAttack(ADV), data=(X, Y), cache=None, device="cpu", sources=["nope"])


def test_labels_are_unique():
    from trend_core.config.labels import model_labels
    from trend_core.config.specs import ModelSpec
    from trend_core.nn.build import build_model

    narrow, wide = (build_model(ModelSpec(dataset="digits", width=w)) for w in (0.25, 0.5))  # both "FP-s0"
    assert model_labels([narrow, wide, ThresholdRule("A", 0), ThresholdRule("A", 1)]) == [
        "FP-s0-w0.25",
        "FP-s0-w0.5",
        "A#1",
        "A#2",
    ]  # the short name and what tells the two apart


def test_unnamed_modules_get_labels():
    models = [nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.Linear(2, 2))]
    attack = PGD(eps=0.1, steps=2)
    result = run_transfer(models, attack, data=(X, Y), cache=None, device="cpu")
    assert result.sources == ["model0", "model1"]


# ----------------------------------------------------------------------------- cache, resume, several eps
def test_identical_rerun_is_served_from_the_cache(tmp_path):
    store = Store(tmp_path)
    models = pair_models()
    first_attack = ScriptedAttack(ADV)
    first = run_transfer(models, first_attack, data=(X, Y), cache=store, device="cpu")
    assert first_attack._calls == ["A", "B"]
    forwards = [m.forward_calls for m in models]
    steps = []
    again = ScriptedAttack(ADV)
    second = run_transfer(
        models, again, data=(X, Y), cache=Store(tmp_path), device="cpu", progress=lambda f, m: steps.append((f, m))
    )
    assert again._calls == []  # no attack ran
    assert [m.forward_calls for m in models] == forwards  # no forward pass either: predictions were cached
    assert all("(cached)" in m for _, m in steps) and [f for f, _ in steps] == [0.5, 1.0]
    pd.testing.assert_frame_equal(first.long(), second.long())
    assert torch.equal(second.examples("A", "B").adv, first.examples("A", "B").adv)


def test_changed_weights_or_attack_miss_the_cache(tmp_path):
    store = Store(tmp_path)
    models = pair_models()
    run_transfer(models, ScriptedAttack(ADV), data=(X, Y), cache=store, device="cpu")
    with torch.no_grad():
        models[1].linear.bias[0] += 0.0  # an in-place write: same values, so the same fingerprint
    attack = ScriptedAttack(ADV)
    run_transfer(models, attack, data=(X, Y), cache=store, device="cpu")
    assert attack._calls == []
    with torch.no_grad():
        models[1].linear.bias[0] -= 1.0  # B now says 1 everywhere: new weights, new results
    attack = ScriptedAttack(ADV)
    run_transfer(models, attack, data=(X, Y), cache=store, device="cpu")
    assert attack._calls == ["B"]
    other = ScriptedAttack({k: v.flip(0) for k, v in ADV.items()})
    run_transfer(models, other, data=(X, Y), cache=store, device="cpu")
    assert other._calls == ["A", "B"]


def test_interrupted_sweep_resumes_at_the_first_source_not_done(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_transfer(pair_models(), ScriptedAttack(ADV, fail_on="B"), data=(X, Y), cache=store, device="cpu")
    resumed = ScriptedAttack(ADV)
    result = run_transfer(pair_models(), resumed, data=(X, Y), cache=store, device="cpu")
    assert resumed._calls == ["B"]  # A's adversarial images and target predictions came from the store
    assert row(result, "A", "B")["transferred"] == 2 and row(result, "B", "A")["transferred"] == 1


def test_cancel_stops_between_sources(tmp_path):
    store = Store(tmp_path)
    attack = ScriptedAttack(ADV)
    with pytest.raises(TransferCancelled):
        run_transfer(
            pair_models(), attack, data=(X, Y), cache=store, device="cpu", cancel=lambda: len(attack._calls) >= 1
        )
    assert attack._calls == ["A"]


def test_several_eps_run_a_minimum_norm_attack_once():
    attack = ScriptedAttack(ADV)
    small, unbounded = run_transfer(pair_models(), attack, data=(X, Y), cache=None, device="cpu", epsilons=[0.2, None])
    assert attack._calls == ["A", "B"]
    assert (small.eps, unbounded.eps) == (0.2, None)
    assert row(unbounded, "A", "B")["transferred"] == 2
    # clipped to L-inf 0.2, no image crosses a 0.5 threshold: nothing is generated, off-diagonal TM is NaN
    assert row(small, "A", "B")["generated"] == 0 and math.isnan(row(small, "A", "B")["tm"])
    assert row(small, "A", "A")["tm"] == 1.0
    assert len(small.warnings) == 2 and "NaN" in small.warnings[0]
    assert math.isnan(small.matrix().at["A", "row_avg"])
    assert small.to_dict()["tm"]["A"]["B"] is None


def test_several_eps_with_pgd_match_single_runs():
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(2, 2)), nn.Sequential(nn.Linear(2, 2))]
    attack = PGD(eps=0.1, steps=5, step_size=0.05)
    both = run_transfer(models, attack, data=(X, Y), cache=None, device="cpu", epsilons=[0.1, 0.3])
    single = run_transfer(models, PGD(eps=0.3, steps=5, step_size=0.05), data=(X, Y), cache=None, device="cpu")
    pd.testing.assert_frame_equal(both[1].long(), single.long())


def test_bad_input_is_a_trend_error():
    with pytest.raises(TrendError):
        run_transfer([], PGD(eps=0.1), data=(X, Y), cache=None)
    with pytest.raises(TrendError):
        run_transfer(pair_models(), "no-such-attack", data=(X, Y), cache=None)
    with pytest.raises(TrendError):
        run_transfer(pair_models(), PGD(eps=0.1), data=(X, Y), cache=None, epsilons=[0])
    with pytest.raises(TrendError):
        run_transfer(pair_models(), PGD(eps=0.1), cache=None)  # no spec, no data
    with pytest.raises(TrendError):
        run_transfer(pair_models(), PGD(eps=0.1), data=(X, Y), limit=0, cache=None)


# ----------------------------------------------------------------------------- real models
def test_zoo_models_agree_with_a_direct_computation(zoo_model, digits, tmp_path):
    from conftest import FP, Q2

    models = [zoo_model(FP), zoo_model(Q2)]
    attack = PGD(eps=0.1, steps=10)
    result = run_transfer(models, attack, limit=60, cache=Store(tmp_path), device="cpu")
    assert result.sources == ["FP-s0", "Q2-s0"] and result.split == "test" and result.n_images == 60
    x, y = digits.tensors("test", 60)
    direct = attack(models[0], x, y)  # the same seeded attack on the same images
    common = (predict(models[0], x) == y) & (predict(models[1], x) == y)
    generated = direct.success & common
    fooled = predict(models[1], direct.x_adv) != y
    r = row(result, "FP-s0", "Q2-s0")
    assert (r["n_common"], r["generated"], r["transferred"]) == (
        int(common.sum()),
        int(generated.sum()),
        int((generated & fooled).sum()),
    )
    assert r["generated"] > 0
    ex = result.examples("FP-s0", "Q2-s0")
    assert float((ex.adv - ex.clean).abs().max()) <= 0.1 + 1e-6
    assert bool((predict(models[1], ex.adv[ex.transferred]) != ex.labels[ex.transferred]).all())
    assert result.specs["FP-s0"] == FP


# ----------------------------------------------------------------------------- seed groups
def constructed_result() -> TransferResult:
    """Three SGD seeds and two Adam seeds of one configuration, with counts chosen by hand."""
    sgd = ["FP-s0", "FP-s1", "FP-s2"]
    adam = ["FP-adam-s0", "FP-adam-s1"]
    labels = sgd + adam
    specs = {f"FP-s{i}": f"digits/resnet18-w0.25/FP/sgd/s{i}" for i in range(3)}
    specs.update({f"FP-adam-s{i}": f"digits/resnet18-w0.25/FP/adam/s{i}" for i in range(2)})
    rows = []
    for i, s in enumerate(labels):
        for j, tt in enumerate(labels):
            generated = 100 + 10 * i
            transferred = generated if i == j else 50 + 5 * i + j
            rows.append(
                {
                    "source": s,
                    "target": tt,
                    "n_common": 200,
                    "generated": generated,
                    "transferred": transferred,
                    "tm": transferred / generated,
                    "mean_l2": 1.0 + i,
                    "mean_linf": 0.1,
                }
            )
    return TransferResult(pd.DataFrame(rows), labels, labels, "pgd", 0.1, "test", 300, specs)


def test_model_groups_drop_the_seed():
    groups = model_groups(constructed_result())
    assert groups == {
        "digits/resnet18-w0.25/FP/sgd": ["FP-s0", "FP-s1", "FP-s2"],
        "digits/resnet18-w0.25/FP/adam": ["FP-adam-s0", "FP-adam-s1"],
    }


def test_seed_group_table_means_and_stds_over_off_diagonal_pairs():
    table = seed_group_table(constructed_result())
    sgd = table.loc["digits/resnet18-w0.25/FP/sgd"]
    # pairs (i, j), i != j in {0, 1, 2}: generated 100 + 10 i, transferred 50 + 5 i + j
    gen = [100, 100, 110, 110, 120, 120]
    trans = [51, 52, 55, 57, 60, 61]
    pct = [100 * a / b for a, b in zip(trans, gen)]
    assert sgd["models"] == 3 and sgd["pairs"] == 6
    assert sgd["generated_mean"] == pytest.approx(110) and sgd["generated_std"] == pytest.approx(pd.Series(gen).std())
    assert sgd["transferred_mean"] == pytest.approx(sum(trans) / 6)
    assert sgd["transfer_pct_mean"] == pytest.approx(sum(pct) / 6)
    assert sgd["transfer_pct_std"] == pytest.approx(pd.Series(pct).std())
    assert sgd["l2_mean"] == pytest.approx(2.0) and sgd["linf_std"] == pytest.approx(0.0)
    adam = table.loc["digits/resnet18-w0.25/FP/adam"]
    # pairs (3, 4) and (4, 3): transferred 50 + 15 + 4 = 69 of 130, 50 + 20 + 3 = 73 of 140
    assert adam["pairs"] == 2 and adam["transferred_mean"] == pytest.approx(71)


def test_cross_table_both_directions():
    result = constructed_result()
    table = cross_table(result, "digits/resnet18-w0.25/FP/sgd", ["FP-adam-s0", "FP-adam-s1"])
    assert list(table.index) == [
        "digits/resnet18-w0.25/FP/sgd -> FP-adam-s0+FP-adam-s1",
        "FP-adam-s0+FP-adam-s1 -> digits/resnet18-w0.25/FP/sgd",
    ]
    forward, backward = table.iloc[0], table.iloc[1]
    # sgd i -> adam j (j = 3, 4): transferred 50 + 5 i + j
    assert forward["pairs"] == 6 and forward["transferred_mean"] == pytest.approx(
        sum(50 + 5 * i + j for i in range(3) for j in (3, 4)) / 6
    )
    assert backward["pairs"] == 6 and backward["transferred_mean"] == pytest.approx(
        sum(50 + 5 * i + j for i in (3, 4) for j in range(3)) / 6
    )
    with pytest.raises(TrendError):
        cross_table(result, "no-such-group", ["FP-s0"])


def test_seed_group_table_needs_two_seeds():
    result = constructed_result()
    with pytest.raises(TrendError):
        seed_group_table(result, {"one": ["FP-s0"]})
    with pytest.raises(TrendError):
        seed_group_table(result, {"bad": ["FP-s9", "FP-s0"]})


def test_memory_store_is_a_store():
    store = MemoryStore()
    run_transfer(pair_models(), ScriptedAttack(ADV), data=(X, Y), cache=store, device="cpu")
    attack = ScriptedAttack(ADV)
    run_transfer(pair_models(), attack, data=(X, Y), cache=store, device="cpu")
    assert attack._calls == []
