"""The majority vote and its tie-breaking, TREND selection against brute force, TM files, robustness sweeps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from conftest import FP, Q1, Q2

from trend_core.attacks.ensemble_pgd import EnsemblePGD
from trend_core.ensemble.selection import read_tm, select_ensembles, symmetrize
from trend_core.errors import TrendError
from trend_core.experiments.ensemble_sweep import robustness_ratios, robustness_sweep
from trend_core.experiments.transfer_result import PAIR_COLUMNS, TransferResult
from trend_core.nn.vote import MajorityVote, expected_correct, majority_vote
from trend_core.storage.store import MemoryStore


class Fixed(nn.Module):
    """A fake member that votes ``cls`` for every image (logits one-hot-ish, differentiable in x)."""

    def __init__(self, cls: int, num_classes: int = 10):
        super().__init__()
        self.cls, self.num_classes = cls, num_classes
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        base = torch.zeros(len(x), self.num_classes, device=x.device)
        base[:, self.cls] = 5.0
        return base + self.scale * x.flatten(1).mean(1, keepdim=True)


# ----------------------------------------------------------------------------- the vote
def test_majority_vote_plurality_and_ties():
    preds = torch.tensor([[1, 2, 3, 0], [1, 2, 4, 5], [2, 3, 5, 5]])  # columns: images
    tiebreak = torch.tensor([2, 0, 1, 0])
    # image 0: 1 wins 2-1; image 1: 2 wins; image 2: 3/4/5 tie -> member 1 votes 4; image 3: 5 wins 2-1
    assert majority_vote(preds, tiebreak).tolist() == [1, 2, 4, 5]
    assert majority_vote(preds, torch.tensor([0, 0, 2, 0])).tolist() == [1, 2, 5, 5]
    y = torch.tensor([1, 3, 4, 0])
    assert expected_correct(preds, y).tolist() == pytest.approx([1.0, 0.0, 1 / 3, 0.0])


def test_ties_are_broken_by_a_seeded_draw_per_image():
    ensemble = MajorityVote([Fixed(3), Fixed(7)], seed=0)  # every image is a 1-1 tie
    x = torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    decision = ensemble(x).argmax(1)
    assert set(decision.tolist()) == {3, 7}
    assert 0.4 < (decision == 3).float().mean() < 0.6  # a fair draw between the two members
    assert torch.equal(decision, ensemble(x).argmax(1))  # seeded: the same again
    in_chunks = torch.cat([ensemble(x[i : i + 7]).argmax(1) for i in range(0, 400, 7)])
    assert torch.equal(decision, in_chunks)  # an image's draw does not depend on its batch
    other = ensemble.with_seed(1)(x).argmax(1)
    assert not torch.equal(decision, other) and set(other.tolist()) == {3, 7}
    y = torch.full((400,), 3)
    assert ensemble.expected_accuracy(x, y).tolist() == [0.5] * 400  # exact expectation over draws
    sampled = ensemble.expected_accuracy(x, y, draws=64).mean()
    assert abs(float(sampled) - 0.5) < 0.05
    with pytest.raises(TrendError):
        ensemble.expected_accuracy(x, y, draws=0)


def test_unique_plurality_needs_no_draw():
    ensemble = MajorityVote([Fixed(3), Fixed(7), Fixed(3)], seed=5)
    x = torch.rand(50, 1, 8, 8)
    assert (ensemble(x).argmax(1) == 3).all()
    assert ensemble.expected_accuracy(x, torch.full((50,), 3)).min() == 1.0


def test_forward_decides_by_vote_but_differentiates_the_mean_probability(zoo_model, digits):
    members = [zoo_model(n) for n in (FP, Q1, Q2)]
    ensemble = MajorityVote(members, seed=0)
    x, y = digits.tensors("test", limit=32)
    with torch.no_grad():
        votes = ensemble.votes(x)
        assert torch.equal(ensemble(x).argmax(1), majority_vote(votes, ensemble.tiebreak(x)))
    xr = x.clone().requires_grad_(True)
    (g_vote,) = torch.autograd.grad(nn.functional.cross_entropy(ensemble(xr), y, reduction="sum"), xr)
    # the same gradient with the decision nudge removed: cross-entropy of the mean softmax
    xr2 = x.clone().requires_grad_(True)
    soft = torch.stack([m(xr2).softmax(1) for m in members]).mean(0).log()
    (g_soft,) = torch.autograd.grad(nn.functional.cross_entropy(soft, y, reduction="sum"), xr2)
    # where the vote picks the mean softmax's top class the nudge is 1e-4 and the gradients agree (compared as
    # vectors: elementwise tolerances fail on near-zero entries whose rounding differs between torch builds);
    # where the vote overrules it, the (detached) nudge lifts the voted class and the loss is taken there
    with torch.no_grad():
        agree = ensemble(x).argmax(1) == soft.detach().argmax(1)
    assert int(agree.sum()) >= len(x) // 2
    diff = (g_vote - g_soft)[agree].flatten(1).norm(dim=1)
    assert bool((diff <= 1e-3 * g_soft[agree].flatten(1).norm(dim=1) + 1e-6).all())
    assert not ensemble.training and "seed=0" in repr(ensemble)


def test_bad_ensembles():
    with pytest.raises(TrendError):
        MajorityVote([])
    with pytest.raises(TrendError):
        MajorityVote([Fixed(1), "model"])
    with pytest.raises(TrendError):
        MajorityVote([Fixed(1)], seed="zero")
    with pytest.raises(TrendError):
        MajorityVote([Fixed(1), Fixed(2)], names=["only one"])


# ----------------------------------------------------------------------------- TREND selection
def random_tm(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.05, 1.0, size=(n, n))
    np.fill_diagonal(values, 1.0)
    names = [f"m{i}" for i in range(n)]
    return pd.DataFrame(values, index=names, columns=names)


def brute_force(tm: pd.DataFrame, k: int, require=(), pool=None) -> tuple[tuple, float]:
    names = list(tm.index)
    pool = pool or names
    best = (None, math.inf)
    for combo in itertools.combinations(names, k):
        if not set(require) <= set(combo) or not set(combo) <= set(pool):
            continue
        score = np.mean([(tm.at[a, b] + tm.at[b, a]) / 2 for a, b in itertools.combinations(combo, 2)])
        if score < best[1]:
            best = (combo, score)
    return best


@pytest.mark.parametrize("n,k,seed", [(6, 2, 0), (8, 3, 1), (9, 4, 2), (7, 5, 3)])
def test_selection_equals_brute_force(n, k, seed):
    tm = random_tm(n, seed)
    ranked = select_ensembles(tm, k, top=5)
    combo, score = brute_force(tm, k)
    assert set(ranked.iloc[0]["members"]) == set(combo)
    assert ranked.iloc[0]["score"] == pytest.approx(score)
    assert list(ranked.index) == [1, 2, 3, 4, 5] and ranked["score"].is_monotonic_increasing
    assert ranked.attrs["method"] == "exhaustive" and ranked.attrs["candidates"] == math.comb(n, k)


def test_selection_honours_required_members_and_the_accuracy_floor():
    tm = random_tm(8, 7)
    accuracies = {f"m{i}": acc for i, acc in enumerate([0.99, 0.7, 0.95, 0.9, 0.6, 0.97, 0.92, 0.5])}
    ranked = select_ensembles(tm, 3, require=["m4"], top=50)
    assert all("m4" in members for members in ranked["members"])
    assert set(ranked.iloc[0]["members"]) == set(brute_force(tm, 3, require=["m4"])[0])
    floor = select_ensembles(tm, 3, require=["m0"], min_acc=0.9, accuracies=accuracies, top=50)
    allowed = [m for m, a in accuracies.items() if a >= 0.9]
    assert all(set(members) <= set(allowed) and "m0" in members for members in floor["members"])
    assert set(floor.iloc[0]["members"]) == set(brute_force(tm, 3, require=["m0"], pool=allowed)[0])
    assert (floor["min_acc"] >= 0.9).all()


def test_greedy_search_beyond_the_exhaustive_limit(monkeypatch):
    names = [f"m{i}" for i in range(10)]
    values = np.full((10, 10), 0.9)
    cluster = [1, 4, 6, 8]  # models that barely transfer to each other
    for a in cluster:
        for b in cluster:
            values[a, b] = 0.1
    np.fill_diagonal(values, 1.0)
    tm = pd.DataFrame(values, index=names, columns=names)
    ranked = select_ensembles(tm, 4, require=["m4"], exhaustive_limit=5)
    assert ranked.attrs["method"] == "greedy"
    assert set(ranked.iloc[0]["members"]) == {"m1", "m4", "m6", "m8"}
    assert ranked.iloc[0]["score"] == pytest.approx(0.1)
    assert all("m4" in members and len(set(members)) == 4 for members in ranked["members"])


def test_undefined_pairs_rank_last_and_one_direction_suffices():
    tm = random_tm(4, 0)
    tm.loc["m0", "m1"] = np.nan  # one direction missing: the other is used
    sym = symmetrize(tm)
    assert sym.at["m0", "m1"] == pytest.approx(tm.at["m1", "m0"]) and np.isnan(sym.at["m2", "m2"])
    tm.loc["m1", "m0"] = np.nan
    ranked = select_ensembles(tm, 2, top=10)
    assert ranked.iloc[-1]["members"] == ("m0", "m1") and ranked.iloc[-1]["undefined_pairs"] == 1


def test_bad_selection_requests():
    tm = random_tm(5, 0)
    for kwargs, message in [
        (dict(k=1), "whole number >= 2"),
        (dict(k=6), "fewer than the ensemble size"),
        (dict(k=2, require=["nope"]), "not in the TM matrix"),
        (dict(k=2, require=["m0", "m1", "m2"]), "do not fit"),
        (dict(k=2, min_acc=0.5), "needs the clean accuracy"),
        (dict(k=2, min_acc=95, accuracies={}), "fraction"),
        (
            dict(k=2, require=["m0"], min_acc=0.9, accuracies={f"m{i}": 0.95 for i in range(5)} | {"m0": 0.5}),
            "below the floor",
        ),
        (dict(k=2, top=0), "top"),
    ]:
        with pytest.raises(TrendError, match=message):
            select_ensembles(tm, **kwargs)
    with pytest.raises(TrendError, match="at least two models"):
        select_ensembles(tm.iloc[:1, :1], 2)


# ----------------------------------------------------------------------------- TM files
def transfer_result(tm: pd.DataFrame) -> TransferResult:
    rows = [
        {
            "source": s,
            "target": t,
            "n_common": 50,
            "generated": 40,
            "transferred": 0,
            "tm": tm.at[s, t],
            "mean_l2": 1.0,
            "mean_linf": 0.1,
        }
        for s in tm.index
        for t in tm.columns
    ]
    return TransferResult(pd.DataFrame(rows, columns=PAIR_COLUMNS), list(tm.index), list(tm.columns), "pgd", 0.1)


def test_read_tm_from_the_transfer_csvs(tmp_path):
    tm = random_tm(4, 1).rename(index=lambda n: n.upper(), columns=lambda n: n.upper())
    result = transfer_result(tm)
    matrix_path, long_path = tmp_path / "tm.csv", tmp_path / "long.csv"
    result.matrix().to_csv(matrix_path, index=True)  # as `trend transfer --csv` writes it
    result.long().set_index(["source", "target"]).to_csv(long_path, index=True)  # as --long-csv does
    for path in (matrix_path, long_path):
        read = read_tm(path)
        assert list(read.index) == list(tm.index) and list(read.columns) == list(tm.columns)
        assert np.allclose(read.to_numpy(), tm.to_numpy())
    assert set(select_ensembles(read_tm(matrix_path), 2).iloc[0]["members"]) == set(brute_force(tm, 2)[0])


def test_bad_tm_files(tmp_path):
    with pytest.raises(TrendError, match="No TM file"):
        read_tm(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("source,A,B\nA,1,x\nB,0.2,1\n")
    with pytest.raises(TrendError, match="non-numeric"):
        read_tm(bad)
    two_eps = tmp_path / "two.csv"
    pd.DataFrame(
        {
            "source": ["A", "A", "B", "B"],
            "target": ["B", "B", "A", "A"],
            "tm": [0.1, 0.2, 0.3, 0.4],
            "eps": [0.1, 0.2, 0.1, 0.2],
        }
    ).to_csv(two_eps)
    with pytest.raises(TrendError, match="several eps"):
        read_tm(two_eps)
    assert read_tm(two_eps, eps=0.2).at["A", "B"] == 0.2
    one_way = tmp_path / "one_way.csv"  # a model with a row but no column would silently drop out of the choice
    pd.DataFrame({"source": ["A"], "target": ["B"], "tm": [0.1]}).to_csv(one_way)
    with pytest.raises(TrendError, match="incomplete"):
        read_tm(one_way)


# ----------------------------------------------------------------------------- robustness sweeps
def test_robustness_sweep_and_ratios(zoo_model, digits, monkeypatch):
    members = [zoo_model(n) for n in (FP, Q1)]
    data = digits.tensors("test", limit=12)
    store = MemoryStore()
    calls = []
    real = EnsemblePGD.perturb
    monkeypatch.setattr(EnsemblePGD, "perturb", lambda self, *a: calls.append(1) or real(self, *a))
    sweep = robustness_sweep(
        members,
        [0.05, 0.15],
        rules=["agd", "dag"],
        data=data,
        steps=3,
        step_size=0.05,
        cache=store,
        device="cpu",
        members_alone=True,
        executor="local",  # the attacks are counted in this process
    )
    assert len(sweep) == 2 * 2 * 3 and set(sweep["model"]) == {"ensemble", "FP-s0", "Q1-s0"}
    assert len(calls) == 2 * 3 * 2  # per rule: the ensemble and two members, each at two eps
    assert sweep[["accuracy", "clean_accuracy"]].apply(lambda c: c.between(0, 1)).all().all()
    on_adv = sweep.set_index("model")["acc_on_ensemble_adv"]
    assert on_adv.loc["ensemble"].isna().all() and on_adv.drop("ensemble").between(0, 1).all()
    strong = sweep[(sweep["eps"] == 0.15) & (sweep["model"] == "FP-s0")]["accuracy"]
    weak = sweep[(sweep["eps"] == 0.05) & (sweep["model"] == "FP-s0")]["accuracy"]
    assert (strong.to_numpy() <= weak.to_numpy() + 1e-9).all()
    # the ensemble's accuracy under attack equals the exact tie expectation on its own adversarial images
    x, y = data
    adv = EnsemblePGD("agd", 0.05, steps=3, step_size=0.05)(MajorityVote(members), x, y).x_adv
    expected = MajorityVote(members).expected_accuracy(adv, y).mean()
    row = sweep[(sweep["rule"] == "agd") & (sweep["eps"] == 0.05) & (sweep["model"] == "ensemble")]
    assert float(row["accuracy"].iloc[0]) == pytest.approx(float(expected))
    again = robustness_sweep(
        members,
        [0.05, 0.15],
        rules=["agd", "dag"],
        data=data,
        steps=3,
        step_size=0.05,
        cache=store,
        device="cpu",
        members_alone=True,
    )
    assert len(calls) == 13 and again.equals(sweep)  # served from the store: only the check above attacked
    ratios = robustness_ratios(sweep)
    assert len(ratios) == 2 * 2 * 2
    for r in ratios.itertuples():
        if r.member_accuracy > 0:
            assert r.times_more_robust == pytest.approx(r.ensemble_accuracy / r.member_accuracy)
    with pytest.raises(TrendError):
        robustness_sweep(members, [0.1], rules=["bogus"], data=data, cache=None)
    with pytest.raises(TrendError):
        robustness_sweep(members, [], data=data, cache=None)
