"""APGD, Square, the attack-time BPDA choice and tie-break EOT: outcomes on trained digits models, and the
cross-check against torchattacks 3.3 (an independent implementation) on the same model and images."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import FP, HT, Q1, Q2

from trend_core.attacks import APGD, Square, make_attack, predict
from trend_core.attacks.apgd import checkpoints
from trend_core.attacks.base import attack_mode
from trend_core.attacks.objective import Objective, dlr_loss
from trend_core.attacks.square import square_fraction
from trend_core.errors import TrendError
from trend_core.nn.bpda import backward_differs, check_backward, with_backward
from trend_core.nn.vote import MajorityVote, expected_correct


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def robust(model, x, y, x_adv) -> float:
    return float(((predict(model, x) == y) & (predict(model, x_adv) == y)).float().mean())


def test_checkpoints_follow_the_papers_schedule():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert all(0 < c < 10 for c in checkpoints(10))


def test_square_fraction_shrinks_on_schedule():
    assert square_fraction(0.8, 0, 1000) == 0.8
    assert square_fraction(0.8, 999, 1000) == pytest.approx(0.8 / 512)
    values = [square_fraction(0.8, q, 1000) for q in range(1000)]
    assert values == sorted(values, reverse=True)


def test_dlr_is_scale_and_shift_invariant():
    logits = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.0, 2.0, 1.0, 0.0]])
    y = torch.tensor([0, 0])
    assert torch.allclose(dlr_loss(logits, y), dlr_loss(4 * logits + 7, y), atol=1e-6)
    assert dlr_loss(logits, y)[0] < 0 < dlr_loss(logits, y)[1]  # right: negative; wrong: positive


@pytest.mark.parametrize("name, eps", [("apgd-ce", 0.1), ("apgd-dlr", 0.1), ("apgd-ce-l2", 0.8), ("square", 0.1)])
def test_adaptive_attacks_stay_in_the_ball_and_fool(zoo_model, digits, name, eps):
    model = zoo_model(FP)
    x, y = digits.tensors("test", limit=48)
    params = {"queries": 200} if name == "square" else {"steps": 30}
    result = make_attack(name, eps=eps, **params)(model, x, y)
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    bound = result.l2 if name.endswith("l2") else result.linf
    assert float(bound.max()) <= eps + 1e-5
    assert result.generated >= 0.3 * int(result.clean_correct.sum())


def test_apgd_and_square_are_deterministic_for_a_seed(zoo_model, digits):
    model = zoo_model(Q2)
    x, y = digits.tensors("test", limit=24)
    for attack in (APGD(0.1, steps=10), Square(0.1, queries=50)):
        assert torch.equal(attack(model, x, y).x_adv, attack(model, x, y).x_adv)


def test_bad_parameters_are_one_sentence():
    for make in (
        lambda: APGD(0.1, loss="hinge"),
        lambda: APGD(0.1, norm="l1"),
        lambda: APGD(0.1, steps=0),
        lambda: Square(0.1, queries=1),
        lambda: Square(0.1, p_init=2.0),
        lambda: check_backward("magic"),
    ):
        with pytest.raises(TrendError):
            make()


# ----------------------------------------------------------------------------- torchattacks cross-check
torchattacks = pytest.importorskip("torchattacks")


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_within_two_points_of_torchattacks_or_stronger(zoo_model, digits, loss):
    model = zoo_model(FP)
    x, y = digits.tensors("test", limit=160)
    ours = APGD(0.1, steps=50, loss=loss)(model, x, y)
    with attack_mode(model):
        theirs = torchattacks.APGD(model, eps=0.1, steps=50, loss=loss, n_restarts=1, seed=0)(x, y)
    ours_robust = float((ours.clean_correct & ~ours.success).float().mean())
    theirs_robust = robust(model, x, y, theirs)
    assert 0.05 < theirs_robust < 0.9  # a setting where the attacks can differ at all
    assert ours_robust <= theirs_robust + 0.02, (ours_robust, theirs_robust)


def test_square_within_two_points_of_torchattacks_or_stronger(zoo_model, digits):
    model = zoo_model(FP)
    x, y = digits.tensors("test", limit=120)
    ours = Square(0.1, queries=200)(model, x, y)
    with attack_mode(model):
        theirs = torchattacks.Square(model, eps=0.1, n_queries=200, seed=0)(x, y)
    ours_robust = float((ours.clean_correct & ~ours.success).float().mean())
    theirs_robust = robust(model, x, y, theirs)
    assert 0.05 < theirs_robust < 0.95
    assert ours_robust <= theirs_robust + 0.02, (ours_robust, theirs_robust)


# ----------------------------------------------------------------------------- BPDA and EOT
def test_backward_choice_keeps_the_forward_and_changes_the_gradient(zoo_model, digits):
    ht = zoo_model(HT)
    x, y = digits.tensors("test", limit=16)
    assert with_backward(ht, "substitute") is ht and with_backward(zoo_model(FP), "identity") is zoo_model(FP)
    assert not backward_differs(zoo_model(Q2), "identity")  # Qn's own substitute is the identity
    assert backward_differs(zoo_model(Q2), "smooth") and backward_differs(ht, "identity")
    grads = {}
    for mode in ("substitute", "identity", "smooth"):
        model = with_backward(ht, mode)
        assert with_backward(ht, mode) is model  # cached: attacks reuse one wrapper and its twin
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        torch.testing.assert_close(out, ht(x), rtol=0, atol=0)
        (grads[mode],) = torch.autograd.grad(F.cross_entropy(out, y), xi)
    agree = (grads["identity"].sign() == grads["substitute"].sign()).float().mean()
    assert agree < 0.9 and grads["identity"].abs().sum() > 0 and grads["smooth"].abs().sum() > 0


def test_vote_objective_averages_tie_break_draws_and_scores_the_expectation(zoo_model, digits):
    vote = MajorityVote([zoo_model(FP), zoo_model(Q1)], seed=0)  # two members: every disagreement is a tie
    x, y = digits.tensors("test", limit=64)
    x = (x + 0.15 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    losses, grad, score = Objective(vote, "ce", draws=3)(x, y)
    single = [Objective(vote.with_seed(s), "ce")(x, y)[0] for s in range(3)]
    torch.testing.assert_close(losses, torch.stack(single).mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(score, expected_correct(vote.votes(x), y).float())
    assert grad.shape == x.shape and ((score > 0) & (score < 1)).any()  # ties occur on noisy digits
