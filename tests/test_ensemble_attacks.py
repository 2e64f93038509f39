"""Ensemble attacks: the four direction rules on hand-made gradients, and EnsemblePGD on trained digits models."""

from __future__ import annotations

import pytest
import torch
from conftest import FP, Q1, Q2

from trend_core.attacks.ensemble_pgd import (
    RULE_NAMES,
    EnsemblePGD,
    agd_direction,
    agreement_trace,
    check_rule,
    dag_direction,
    empir_direction,
    gradient_views,
    member_gradients,
    sign_agreement,
    ugd_direction,
)
from trend_core.errors import TrendError
from trend_core.nn.twin import inference_twin
from trend_core.nn.vote import MajorityVote, majority_vote

EPS = 0.1


def stack(*rows) -> torch.Tensor:
    """Member gradients (N, B=1, d) from rows of numbers."""
    return torch.tensor(rows, dtype=torch.float32).unsqueeze(1)


# ----------------------------------------------------------------------------- rules on hand-made gradients
def test_ugd_is_zero_where_members_disagree_and_follows_unanimous_signs():
    grads = stack([-1.0, 2.0, 0.5, -3.0, 1.0], [-0.2, -1.0, 0.1, -0.1, 1.0], [-5.0, 1.0, 9.0, -0.3, 0.0])
    assert ugd_direction(grads).flatten().tolist() == [-1.0, 0.0, 1.0, -1.0, 0.0]


def test_agd_follows_the_majority_of_signs_whatever_the_magnitudes():
    grads = stack([0.01, -0.01, 0.02], [0.01, -0.01, -0.02], [-100.0, 100.0, 50.0])
    assert agd_direction(grads).flatten().tolist() == [1.0, -1.0, 1.0]
    assert dag_direction(grads).flatten().tolist() == [-1.0, 1.0, 1.0]  # D-AG follows the loud member


def test_dag_follows_a_member_whose_gradient_is_100x_larger():
    gen = torch.Generator().manual_seed(0)
    small = torch.randn(2, 4, 64, generator=gen)
    loud = 100 * torch.randn(1, 4, 64, generator=gen).sign() * (1 + torch.rand(1, 4, 64, generator=gen))
    grads = torch.cat([small, loud])
    assert torch.equal(dag_direction(grads), loud[0].sign())
    agreement = sign_agreement(dag_direction(grads), grads)
    assert agreement[2] == 1.0 and agreement[0] < 0.75 and agreement[1] < 0.75
    assert not torch.equal(agd_direction(grads), loud[0].sign())  # A-GD is not dominated


def test_empir_averages_only_members_that_voted_for_the_ensemble_class():
    grads = torch.tensor(
        [[[1.0, 1.0], [1.0, 1.0]], [[-3.0, 1.0], [-3.0, -3.0]], [[1.0, -3.0], [1.0, 1.0]]]
    )  # (N=3, B=2, d=2)
    preds = torch.tensor([[4, 7], [4, 2], [5, 7]])
    decision = torch.tensor([4, 7])
    # image 0: members 0, 1 voted 4 -> sign(mean([1,1], [-3,1])) = [-1, 1]; image 1: members 0, 2 voted 7
    assert empir_direction(grads, preds, decision).tolist() == [[-1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(TrendError):
        empir_direction(grads)


def test_rule_names_and_bad_rules():
    assert [check_rule(r) for r in ("D-AG", "EMPIR", "u_gd", "AGD")] == list(RULE_NAMES)
    with pytest.raises(TrendError, match="Unknown ensemble attack rule"):
        check_rule("mean")
    with pytest.raises(TrendError):
        EnsemblePGD("agd", eps=0)
    with pytest.raises(TrendError):
        EnsemblePGD("agd", eps=EPS, steps=0)
    with pytest.raises(TrendError):
        EnsemblePGD("agd", eps=EPS, step_size=-1)
    with pytest.raises(TrendError):
        EnsemblePGD("agd", eps=EPS, on_step="not callable")


# ----------------------------------------------------------------------------- EnsemblePGD on trained models
@pytest.fixture(scope="module")
def trio(zoo_model):
    return [zoo_model(n) for n in (FP, Q1, Q2)]


@pytest.fixture(scope="module")
def images(digits):
    return digits.tensors("test", limit=16)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_each_rule_stays_in_the_ball_and_success_is_the_majority_vote(trio, images, rule):
    x, y = images
    ensemble = MajorityVote(trio, seed=3)
    result = EnsemblePGD(rule, eps=EPS, steps=5, step_size=0.03)(ensemble, x, y)
    assert result.attack == {"dag": "D-AG", "empir": "EMPIR", "ugd": "U-GD", "agd": "A-GD"}[rule]
    assert (result.x_adv - x).abs().max() <= EPS + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    clean_vote = majority_vote(ensemble.votes(x), ensemble.tiebreak(x))
    adv_vote = majority_vote(ensemble.votes(result.x_adv), ensemble.tiebreak(result.x_adv))
    assert torch.equal(result.clean_correct, clean_vote == y)
    assert torch.equal(result.success, (clean_vote == y) & (adv_vote != y))


def test_a_list_of_members_is_wrapped_in_a_vote_and_the_attack_is_deterministic(trio, images):
    x, y = images
    attack = EnsemblePGD("agd", eps=EPS, steps=4, step_size=0.03, seed=1)
    first = attack(trio, x, y)
    again = attack(MajorityVote(trio, seed=1), x, y)
    assert torch.equal(first.x_adv, again.x_adv)


def test_the_paper_random_start_lies_within_one_step_of_the_image(trio, images):
    """One step from the paper's random start moves a pixel at most two step sizes (not up to eps); without a
    random start every pixel moves by exactly one step size (or not at all)."""
    x, y = images
    x, y = x[:4], y[:4]
    started = EnsemblePGD("dag", eps=EPS, steps=1, step_size=0.02)(trio, x, y).x_adv - x
    plain = EnsemblePGD("dag", eps=EPS, steps=1, step_size=0.02, random_start=False)(trio, x, y).x_adv - x
    inside = (x > 0.05) & (x < 0.95)  # pixels the [0, 1] box does not clip
    assert int(inside.sum()) >= 40
    moved = plain[inside].abs()
    assert ((moved - 0.02).abs() < 1e-6).logical_or(moved < 1e-6).all()
    assert float(started.abs().max()) <= 0.04 + 1e-6
    assert float(((started[inside].abs() - 0.02).abs() > 1e-4).float().mean()) > 0.5  # the start moved them


def test_one_forward_per_member_per_step(trio, images):
    x, y = images
    counts = [0, 0, 0]
    steps = [0, 0, 0]
    hooks = [m.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1)) for i, m in enumerate(trio)]
    hooks += [
        inference_twin(m).register_forward_hook(lambda *_, i=i: steps.__setitem__(i, steps[i] + 1))
        for i, m in enumerate(trio)
    ]
    try:
        EnsemblePGD("empir", eps=EPS, steps=3, step_size=0.03).run(trio, x, y, [EPS], speedup=True)
    finally:
        for h in hooks:
            h.remove()
    assert steps == [3] * 3  # the iterations run on each member's inference twin
    assert counts == [2] * 3  # the clean and adversarial verdicts of the base class, on the members themselves


def test_single_member_attack_matches_torchattacks_pgd(zoo_model, images):
    torchattacks = pytest.importorskip("torchattacks")
    model = zoo_model(FP)
    x, y = images
    ours = EnsemblePGD("agd", eps=EPS, steps=10, step_size=0.02, random_start=False)([model], x, y).x_adv
    ref = torchattacks.PGD(model, eps=EPS, alpha=0.02, steps=10, random_start=False)(x, y)
    assert (ours - ref).abs().max() < 1e-5


def test_step_callback_reports_per_member_agreement(trio, images):
    x, y = images
    seen = []
    EnsemblePGD("dag", eps=EPS, steps=3, step_size=0.03, on_step=lambda t, a: seen.append((t, a)))(trio, x, y)
    assert [t for t, _ in seen] == [0, 1, 2]
    assert all(a.shape == (3,) and ((a >= 0) & (a <= 1)).all() for _, a in seen)
    trace = agreement_trace(EnsemblePGD("ugd", eps=EPS, steps=2, step_size=0.03), [trio[0]], x, y)
    assert list(trace.columns) == ["rule", "step", "member", "agreement"]
    assert (trace["agreement"] == 1.0).all()  # a lone member always agrees with its own sign


def test_gradient_views_of_one_image(trio, images):
    x, y = images
    views = gradient_views(MajorityVote(trio), x[0], int(y[0]))
    grads, _ = member_gradients(trio, x[:1], y[:1])
    assert views.names == ["FP-s0", "Q1-s0", "Q2-s0"] and views.image.shape == (1, 8, 8)
    for i in range(3):
        assert views.gradients[i].shape == (1, 8, 8)
        assert torch.allclose(torch.from_numpy(views.gradients[i]), grads[i, 0])
        assert (views.dag_diff[i] == views.dag - views.signs[i]).all()
        assert set(views.agd_diff[i].flatten().tolist()) <= {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert (views.dag == torch.sign(grads.mean(0))[0].numpy()).all()
    assert len(views.tiles()) == 4 and len(views.agreement_frame()) == 6
    with pytest.raises(TrendError):
        gradient_views(MajorityVote(trio), x[:2], y[:2])
