"""Stacked sources: PGD on several same-architecture models as one vmap gives what one-at-a-time PGD gives, the
transfer run's matrix is unchanged by stacking, and models that cannot stack are attacked one at a time."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn
from conftest import FP, FP_S1, Q2

from trend_core.attacks.pgd import PGD
from trend_core.attacks.stacked import (
    GRAPHS_ENV,
    STACK_ENV,
    StackedNets,
    graphs_wanted,
    run_stacked,
    stacked_groups,
    stacking_wanted,
)
from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError
from trend_core.experiments import transfer as transfer_module
from trend_core.experiments.eval_data import evaluation_data
from trend_core.experiments.transfer import run_transfer
from trend_core.nn.build import build_model

PIXEL_ATOL = 1e-5  # L-inf PGD steps by gradient signs: float rounding (~1e-6 relative) does not flip them here


def built(name: str) -> nn.Module:
    return build_model(ModelSpec.parse(name)).eval()


def images(models, limit: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = evaluation_data(models, None, "test", limit)
    return x.clone(), y.clone()


def assert_same_results(one_by_one, stacked):
    """Equal within float tolerance. The stacked pass sums in another order (and the one-at-a-time twin runs
    channels_last on the CPU), so a gradient within rounding of 0 can take the other sign and move that pixel a
    whole step: such pixels are allowed to be rare (0.5%), and at most one verdict in 50 may differ."""
    for alone, together in zip(one_by_one, stacked, strict=True):
        for a, b in zip(alone, together, strict=True):
            moved = (a.x_adv - b.x_adv).abs() > PIXEL_ATOL
            assert float(moved.float().mean()) <= 0.005
            assert torch.equal(a.clean_correct, b.clean_correct)
            assert int((a.success != b.success).sum()) <= max(1, len(a.success) // 50)
            same = ~moved.flatten(1).any(dim=1)  # images no pixel of which flipped: their norms agree
            assert torch.allclose(a.l2[same], b.l2[same], atol=1e-4)


@pytest.mark.slow
def test_stacked_pgd_equals_one_at_a_time(zoo_model):
    # trained FP (two seeds) and Q2, and an untrained 2-bit-weight twin of the same network: one group
    models = [zoo_model(FP), zoo_model(FP_S1), zoo_model(Q2), built("digits/resnet18-w0.25/FP-W2/sgd/s2")]
    x, y = images(models, 48)
    attack = PGD(eps=0.1, steps=6)
    assert stacked_groups(attack, models) == [[0, 1, 2, 3]]
    one_by_one = [attack.run(m, x, y, [0.05, 0.1], speedup=True) for m in models]
    stacked = run_stacked(attack, models, x, y, [0.05, 0.1])
    assert_same_results(one_by_one, stacked)
    assert stacked[0][1].success_rate > 0.2  # the attack did work: equality is not two untouched batches
    assert not torch.equal(stacked[0][1].x_adv, stacked[1][1].x_adv)  # each copy followed its own model


@pytest.mark.slow
def test_stacked_pgd_with_chunks_and_activation_quantization():
    models = [built("digits/resnet18-w0.125/FP-W2-A2/sgd/s0"), built("digits/resnet18-w0.125/FP-W2-A2/sgd/s1")]
    x, y = images(models, 40)
    attack = PGD(eps=0.1, steps=5, batch_size=16)  # three chunks, each from its own seeded random start
    assert stacked_groups(attack, models) == [[0, 1]]
    one_by_one = [attack.run(m, x, y, [0.1], speedup=True) for m in models]
    assert_same_results(one_by_one, run_stacked(attack, models, x, y, [0.1]))


@pytest.mark.slow
def test_stacked_l2_pgd_stays_within_rounding_drift(zoo_model):
    # an L2 step keeps the gradient's magnitude, so rounding (~1e-6) compounds over the steps instead of
    # vanishing in a sign: a looser pixel bound, and the verdicts must still agree
    models = [zoo_model(FP), zoo_model(FP_S1)]
    x, y = images(models, 60)
    attack = PGD(eps=0.4, steps=8, norm="l2")
    one_by_one = [attack.run(m, x, y, [0.4], speedup=True)[0] for m in models]
    stacked = [r[0] for r in run_stacked(attack, models, x, y, [0.4])]
    for a, b in zip(one_by_one, stacked):
        assert (a.x_adv - b.x_adv).abs().max() <= 1e-3
        assert (a.success != b.success).sum() <= 1
        assert (b.l2 <= 0.4 + 1e-5).all()


class Flat(nn.Module):
    """Not a TrendModel: nothing to stack it with."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.mark.slow
def test_mixed_architectures_group_and_fall_back(zoo_model):
    models = [
        zoo_model(FP),
        built("digits/resnet18-w0.125/FP/sgd/s0"),  # another width
        zoo_model(Q2),
        built("digits/resnet18-w0.25/FP-A2/sgd/s0"),  # activation bits change the layers
        Flat(),
        built("digits/resnet18-w0.125/Q2/sgd/s1"),
    ]
    x, y = images(models[:1], 40)
    attack = PGD(eps=0.1, steps=5)
    assert stacked_groups(attack, models) == [[0, 2], [1, 5], [3], [4]]
    one_by_one = [attack.run(m, x, y, [0.1], speedup=True) for m in models]
    assert_same_results(one_by_one, run_stacked(attack, models, x, y, [0.1]))


def test_a_group_vmap_refuses_is_attacked_one_at_a_time(zoo_model, monkeypatch, caplog):
    models = [zoo_model(FP), zoo_model(FP_S1)]
    x, y = images(models, 30)
    attack = PGD(eps=0.1, steps=3)

    def refuse(self, x):
        raise RuntimeError("vmap: no batching rule for this layer")

    # seam: no zoo model makes vmap refuse (that is the rare case this fallback is for); the refusal is simulated
    monkeypatch.setattr(StackedNets, "forward", refuse)
    with caplog.at_level(logging.WARNING, logger="trend_core.attacks.stacked"):
        stacked = run_stacked(attack, models, x, y, [0.1])
    assert "one at a time" in caplog.text and "no batching rule" in caplog.text
    assert_same_results([attack.run(m, x, y, [0.1], speedup=True) for m in models], stacked)


def test_only_plain_pgd_stacks(zoo_model):
    class OwnPGD(PGD):
        pass

    models = [zoo_model(FP), zoo_model(FP_S1)]
    assert stacked_groups(OwnPGD(eps=0.1), models) == [[0], [1]]
    with pytest.raises(TrendError):
        run_stacked(OwnPGD(eps=0.1), models, *images(models, 4), [0.1])


def test_stacking_is_on_for_cuda_by_default_and_can_be_forced(monkeypatch):
    monkeypatch.delenv(STACK_ENV, raising=False)
    assert stacking_wanted("cuda") and not stacking_wanted("cpu")
    monkeypatch.setenv(STACK_ENV, "on")
    assert stacking_wanted("cpu")
    monkeypatch.setenv(STACK_ENV, "off")
    assert not stacking_wanted("cuda")
    monkeypatch.setenv(STACK_ENV, "sometimes")
    with pytest.raises(TrendError, match=STACK_ENV):
        stacking_wanted("cpu")


@pytest.mark.slow
def test_transfer_matrix_is_the_same_with_stacking(zoo_model, monkeypatch):
    models = [zoo_model(FP), zoo_model(FP_S1), zoo_model(Q2), built("digits/resnet18-w0.125/FP/sgd/s0")]
    attack = PGD(eps=0.1, steps=5)
    calls = []

    def counted(*args, **kwargs):
        calls.append(len(args[1]))
        return run_stacked(*args, **kwargs)

    # seam: a stacked group's results equal one-by-one attacks by design, so only a count at run_transfer's call
    # of the public run_stacked tells which sources it stacked
    monkeypatch.setattr(transfer_module, "run_stacked", counted)
    monkeypatch.setenv(STACK_ENV, "off")
    alone = run_transfer(models, attack, limit=40, cache=None, device="cpu")
    assert calls == []
    monkeypatch.setenv(STACK_ENV, "on")
    messages = []
    together = run_transfer(
        models, attack, limit=40, cache=None, device="cpu", progress=lambda f, m: messages.append(m)
    )
    assert calls == [3]  # the three w0.25 models as one group; the w0.125 one alone, through the usual path
    assert not any("(cached)" in m for m in messages)  # stacked sources were attacked, not read from a cache
    assert alone.matrix().equals(together.matrix())
    assert alone.matrix("transferred").equals(together.matrix("transferred"))
    assert (alone.matrix("tm", averages=False).fillna(0) > 0).to_numpy().sum() >= 3  # some attacks transferred


def test_cuda_graphs_are_asked_for_and_never_used_off_cuda(zoo_model, monkeypatch):
    monkeypatch.delenv(GRAPHS_ENV, raising=False)
    assert not graphs_wanted("cuda", PGD(eps=0.1))
    monkeypatch.setenv(GRAPHS_ENV, "on")
    assert graphs_wanted("cuda", PGD(eps=0.1)) and not graphs_wanted("cuda", PGD(eps=0.1, autocast=True))
    assert not graphs_wanted("cpu", PGD(eps=0.1))
    models = [zoo_model(FP), zoo_model(FP_S1)]
    x, y = images(models, 16)
    attack = PGD(eps=0.1, steps=3)
    assert_same_results(
        [attack.run(m, x, y, [0.1], speedup=True) for m in models],
        run_stacked(attack, models, x, y, [0.1], graphs=True),
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphed_stacked_pgd_matches_eager_stacked(zoo_model):
    models = [zoo_model(FP).cuda(), zoo_model(FP_S1).cuda(), zoo_model(Q2).cuda()]
    try:
        x, y = images(models, 128)
        attack = PGD(eps=0.1, steps=20, batch_size=48)  # two capture shapes: 48 and the last chunk's 32
        eager = [r[0] for r in run_stacked(attack, models, x, y, [0.1], graphs=False)]
        graphed = [r[0] for r in run_stacked(attack, models, x, y, [0.1], graphs=True)]
        for a, b in zip(eager, graphed):
            assert abs(a.success_rate - b.success_rate) <= 0.03
            assert (b.linf <= 0.1 + 1e-5).all()
    finally:
        for m in models:
            m.cpu()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_stacked_pgd_on_cuda_matches_one_at_a_time(zoo_model):
    # TF32 and vmap's grouped kernels round differently from the single-model kernels: compare the verdicts
    models = [zoo_model(FP).cuda(), zoo_model(FP_S1).cuda(), zoo_model(Q2).cuda()]
    try:
        x, y = images(models, 200)
        attack = PGD(eps=0.1, steps=20)
        one_by_one = [attack.run(m, x, y, [0.1], speedup=True)[0] for m in models]
        stacked = [r[0] for r in run_stacked(attack, models, x, y, [0.1])]
        for a, b in zip(one_by_one, stacked):
            assert abs(a.success_rate - b.success_rate) <= 0.03
            assert (b.linf <= 0.1 + 1e-5).all()
    finally:
        for m in models:
            m.cpu()
