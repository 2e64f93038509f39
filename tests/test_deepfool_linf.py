"""L-inf DeepFool against foolbox's LinfDeepFoolAttack (the implementation behind the TREND paper's DeepFool rows)
on the same trained digits model and images. foolbox is a test-only dependency."""

from __future__ import annotations

import pytest
from conftest import FP
from test_attacks import one_thread  # noqa: F401  (autouse: one torch thread here)

from trend_core.attacks import DeepFoolLinf, make_attack, predict
from trend_core.attacks.base import attack_mode, perturbation_norms

foolbox = pytest.importorskip("foolbox")


@pytest.fixture(scope="module")
def model(zoo_model):
    return zoo_model(FP)


def foolbox_linf_deepfool(model, x, y, steps: int, eps: float | None):
    """foolbox's result (clipped to eps when given) and whether it fools the model, judged as ours is."""
    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=x.device)
    attack = foolbox.attacks.LinfDeepFoolAttack(steps=steps, candidates=10, overshoot=0.02)
    with attack_mode(model):
        _, clipped, _ = attack(fmodel, x, y, epsilons=eps)
    success = (predict(model, x) == y) & (predict(model, clipped) != y)
    return clipped, success


def test_registry_offers_both_deepfools():
    assert isinstance(make_attack("deepfool-linf"), DeepFoolLinf)
    assert make_attack("deepfool-linf").norm == "linf" and make_attack("deepfool").norm == "l2"
    assert make_attack("deepfool-linf").steps == 40  # the paper's setting


def test_unbounded_result_matches_foolbox_image_by_image(model, digits):
    x, y = digits.tensors("test", limit=120)
    ours = DeepFoolLinf(steps=40)(model, x, y)
    theirs, theirs_success = foolbox_linf_deepfool(model, x, y, 40, None)
    assert int(theirs_success.sum()) > 80  # a trained model, most correctly classified digits fooled
    agree = float((ours.success == theirs_success).float().mean())
    assert agree >= 0.97, agree
    both = ours.success & theirs_success
    theirs_linf = perturbation_norms(x, theirs)[1]
    # the same path: per-image L-inf sizes within 2% on at least 95% of the images both fool (the rest may pick
    # another of two near-tied candidate classes under different float rounding)
    close = (ours.linf[both] - theirs_linf[both]).abs() <= 0.02 * theirs_linf[both] + 1e-6
    assert float(close.float().mean()) >= 0.95
    # an L-inf attack: the perturbation is spread over the image, L2 / L-inf well above 1 (sqrt(64) = 8 at most)
    assert float((ours.l2[ours.success] / ours.linf[ours.success]).mean()) > 3


def test_clipped_to_the_papers_eps_matches_foolbox(model, digits):
    x, y = digits.tensors("test", limit=120)
    eps = 0.1
    ours = DeepFoolLinf(steps=40, eps=eps)(model, x, y)
    assert float(ours.linf.max()) <= eps + 1e-6 and ours.x_adv.min() >= 0 and ours.x_adv.max() <= 1
    _, theirs_success = foolbox_linf_deepfool(model, x, y, 40, eps)
    correct = int(ours.clean_correct.sum())
    ours_rate, theirs_rate = ours.generated / correct, int(theirs_success.sum()) / correct
    assert 0.1 < theirs_rate < 0.95  # a setting where the clip matters
    assert abs(ours_rate - theirs_rate) <= 0.03, (ours_rate, theirs_rate)
