"""Attacks: eps-ball and box invariants (property tests), minimum-norm behaviour, BPDA gradients, run()
semantics, the registry and bad input. Comparisons with torchattacks live in test_attack_reference.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from conftest import FP, HT, Q1
from hypothesis import given, settings
from hypothesis import strategies as st

from trend_core.attacks import (
    ATTACK_NAMES,
    PGD,
    Attack,
    AttackResult,
    CarliniWagnerL2,
    DeepFool,
    clip_to_ball,
    make_attack,
    predict,
)
from trend_core.attacks.cw import margin_loss
from trend_core.attacks.pgd import input_gradient
from trend_core.errors import TrendError

TOL = 1e-6


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Attacks run many small steps: on a shared, loaded 2-core machine, hand-offs between two torch threads
    cost far more than the work (torchattacks' batch-1 DeepFool ran over ten times slower), so use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(channels: int, size: int, classes: int = 4, seed: int = 0) -> nn.Module:
    """A random two-layer net for shape-agnostic property tests (fast, deterministic)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 16), nn.ReLU(), nn.Linear(16, classes))


def tiny_batch(n: int, channels: int, size: int, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size, size, generator=g)
    x[:, :, 0, 0] = 0.0  # pixels on the box edges: clipping must keep them inside
    x[:, :, -1, -1] = 1.0
    return x, torch.randint(0, classes, (n,), generator=g)


def assert_valid(result: AttackResult, x: torch.Tensor, eps: float | None, norm: str) -> None:
    assert result.x_adv.shape == x.shape
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    delta = (result.x_adv - x).flatten(1)
    if eps is not None:
        bound = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert (bound <= eps + TOL).all(), f"left the {norm} ball of radius {eps}: {bound.max()}"
    assert torch.allclose(result.l2, delta.norm(dim=1), atol=1e-5)
    assert torch.allclose(result.linf, delta.abs().amax(1), atol=1e-6)
    assert not (result.success & ~result.clean_correct).any()


shapes = st.tuples(st.integers(1, 5), st.sampled_from([1, 3]), st.integers(2, 8))


@settings(max_examples=30, deadline=None)
@given(shape=shapes, eps=st.floats(1e-3, 1.0), norm=st.sampled_from(["linf", "l2"]), seed=st.integers(0, 99))
def test_pgd_stays_in_eps_ball_and_box(shape, eps, norm, seed):
    n, c, s = shape
    x, y = tiny_batch(n, c, s, seed=seed)
    eps = eps if norm == "linf" else eps * 4  # L2 budgets are larger
    result = PGD(eps=eps, steps=3, step_size=eps / 2, norm=norm, seed=seed)(tiny_model(c, s, seed=seed), x, y)
    assert_valid(result, x, eps, norm)


@settings(max_examples=15, deadline=None)
@given(
    shape=shapes,
    eps=st.floats(1e-2, 3.0),
    seed=st.integers(0, 99),
    attack=st.sampled_from([CarliniWagnerL2(steps=5, binary_search_steps=2, initial_c=1.0), DeepFool(steps=5)]),
)
def test_minimum_norm_attacks_stay_in_box_and_clip_to_each_eps(shape, eps, seed, attack):
    n, c, s = shape
    x, y = tiny_batch(n, c, s, seed=seed)
    unbounded, clipped = attack.run(tiny_model(c, s, seed=seed), x, y, epsilons=[None, eps])
    assert_valid(unbounded, x, None, "l2")
    assert_valid(clipped, x, eps, "l2")
    assert torch.allclose(clipped.x_adv, clip_to_ball(x, unbounded.x_adv, eps, "l2"))


def test_run_runs_pgd_once_per_eps_and_minimum_norm_attacks_once(digits):
    model = tiny_model(1, 8, classes=10)
    x, y = digits.tensors("test", limit=16)
    calls = []

    class CountingPGD(PGD):
        def perturb(self, model, x, y, eps, generator):
            calls.append(eps)
            return super().perturb(model, x, y, eps, generator)

    class CountingDeepFool(DeepFool):
        def perturb(self, model, x, y, eps, generator):
            calls.append(eps)
            return super().perturb(model, x, y, eps, generator)

    results = CountingPGD(eps=0.1, steps=2).run(model, x, y, epsilons=[0.02, 0.05])
    assert calls == [0.02, 0.05] and [r.eps for r in results] == [0.02, 0.05]
    for r, eps in zip(results, [0.02, 0.05]):
        assert_valid(r, x, eps, "linf")
    calls.clear()
    results = CountingDeepFool(steps=5).run(model, x, y, epsilons=[0.1, 0.5, None])
    assert calls == [None] and [r.eps for r in results] == [0.1, 0.5, None]
    assert (results[0].l2 <= 0.1 + TOL).all() and (results[1].l2 <= 0.5 + TOL).all()
    assert torch.equal(results[2].x_adv, CountingDeepFool(steps=5)(model, x, y).x_adv)


def test_chunked_run_equals_one_batch(digits):
    model = tiny_model(1, 8, classes=10)
    x, y = digits.tensors("test", limit=20)
    whole = DeepFool(steps=10)(model, x, y)
    chunked = DeepFool(steps=10, batch_size=7)(model, x, y)
    assert torch.allclose(whole.x_adv, chunked.x_adv, atol=1e-6)
    assert torch.equal(whole.success, chunked.success)


def test_pgd_l2_variant_moves_along_l2_and_fools(zoo_model, digits):
    model = zoo_model(FP)
    x, y = digits.tensors("test", limit=40)
    weak, strong = PGD(eps=0.3, steps=8, step_size=0.2, norm="l2").run(model, x, y, epsilons=[0.3, 1.5])
    assert_valid(weak, x, 0.3, "l2")
    assert_valid(strong, x, 1.5, "l2")
    assert strong.summary()["success_rate"] > 0.9  # an L2 budget of 1.5 on 8x8 digits breaks nearly all
    assert strong.generated > weak.generated


def test_deepfool_fools_nearly_all_correct_digits_and_leaves_misclassified_ones(zoo_model, digits):
    model = zoo_model(FP)
    x, y = digits.tensors("test", limit=200)
    result = DeepFool()(model, x, y)
    summary = result.summary()
    assert summary["clean_correct"] > 180
    assert summary["success_rate"] >= 0.95
    wrong = ~result.clean_correct
    assert wrong.any() and torch.equal(result.x_adv[wrong], x[wrong])  # already fooled: not moved
    assert 0 < summary["mean_l2"] < 2.0


def test_cw_binary_search_keeps_each_images_smallest_success(zoo_model, digits):
    model = zoo_model(FP)
    x, y = digits.tensors("test", limit=24)
    single = CarliniWagnerL2(steps=20, lr=0.05, binary_search_steps=1, initial_c=0.1)(model, x, y)
    searched = CarliniWagnerL2(steps=20, lr=0.05, binary_search_steps=4, initial_c=0.1)(model, x, y)
    # the first search step is the single run; later steps only add successes or shrink perturbations
    assert (searched.success >= single.success).all()
    both = single.success & searched.success
    assert (searched.l2[both] <= single.l2[both] + 1e-6).all()
    assert searched.generated > single.generated  # c = 0.1 is too small for some; the search raises it
    never = searched.clean_correct & ~searched.success
    assert torch.equal(searched.x_adv[never], x[never])


def test_cw_margin_is_right_when_every_logit_is_negative():
    logits = torch.tensor([[-5.0, -1.0, -3.0], [-2.0, -9.0, -4.0]])
    f, fooled = margin_loss(logits, torch.tensor([1, 1]), kappa=0.0)
    # image 0: class 1 still wins by 2 (zero masking would take 0 as the best other logit and call it fooled);
    # image 1: class 0 wins by 7, clamped at -kappa
    assert torch.allclose(f, torch.tensor([2.0, 0.0])) and fooled.tolist() == [False, True]
    f, fooled = margin_loss(logits, torch.tensor([1, 1]), kappa=3.0)
    assert torch.allclose(f, torch.tensor([2.0, -3.0])) and fooled.tolist() == [False, True]
    f, fooled = margin_loss(logits, torch.tensor([1, 1]), kappa=10.0)
    assert torch.allclose(f, torch.tensor([2.0, -7.0])) and fooled.tolist() == [False, False]


def test_cw_unaffected_by_shifting_all_logits_negative(zoo_model, digits):
    model = zoo_model(FP)
    shifted = nn.Sequential(model, Shift(-100.0))
    x, y = digits.tensors("test", limit=24)
    attack = CarliniWagnerL2(steps=20, binary_search_steps=1, initial_c=1.0, lr=0.05)
    plain, negative = attack(model, x, y), attack(shifted, x, y)
    assert plain.generated > 10
    assert torch.equal(plain.success, negative.success)
    assert torch.allclose(plain.l2, negative.l2, atol=1e-3)


class Shift(nn.Module):
    def __init__(self, amount: float):
        super().__init__()
        self.amount = amount

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.amount


@pytest.mark.parametrize("name", [Q1, HT])
def test_bpda_gives_nonzero_gradients_through_quantized_inputs(zoo_model, digits, name):
    model = zoo_model(name)
    x, y = digits.tensors("test", limit=32)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        grad = input_gradient(model, x, y)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    assert (grad.flatten(1).abs().sum(1) > 0).all()  # every image gets a gradient through the quantizer
    result = PGD(eps=0.2, steps=10, step_size=0.05)(model, x, y)
    assert result.generated > 0


def test_attacks_leave_the_model_as_they_found_it(zoo_model, digits):
    model = zoo_model(FP)
    x, y = digits.tensors("test", limit=8)
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for attack in (PGD(eps=0.1, steps=2), CarliniWagnerL2(steps=2, binary_search_steps=1), DeepFool(steps=2)):
            attack(model, x, y)
            assert model.training
            assert [p.requires_grad for p in model.parameters()] == flags
            assert all(p.grad is None for p in model.parameters())  # no parameter gradients computed
    finally:
        model.eval()


def test_registry_builds_every_attack_with_its_defaults():
    assert ATTACK_NAMES[:5] == ("pgd", "pgd-l2", "cw", "deepfool", "deepfool-linf")
    pgd = make_attack("pgd", eps=0.1, steps=None)
    assert isinstance(pgd, PGD) and pgd.norm == "linf" and pgd.steps == 40 and pgd.eps == 0.1
    pgd_l2 = make_attack("PGD-L2", eps=1.0)
    assert isinstance(pgd_l2, PGD) and pgd_l2.norm == "l2"
    cw = make_attack("cw", kappa=30)
    assert isinstance(cw, CarliniWagnerL2) and cw.kappa == 30 and cw.steps == 100 and cw.minimum_norm
    assert (cw.lr, cw.binary_search_steps, cw.initial_c) == (0.01, 9, 1e-3)
    deepfool = make_attack("deepfool")
    assert isinstance(deepfool, DeepFool) and deepfool.minimum_norm
    assert (deepfool.steps, deepfool.overshoot, deepfool.candidates) == (50, 0.02, 10)
    assert all(isinstance(make_attack(n, eps=0.5), Attack) for n in ATTACK_NAMES)
    assert make_attack("cw", kappa=0).params() != make_attack("cw", kappa=30).params()  # distinct cache keys


@pytest.mark.parametrize(
    "name, params, words",
    [
        ("fgsm", {}, "pgd, pgd-l2, cw, deepfool"),
        ("cw", {"kapa": 1}, "kapa"),
        ("pgd-l2", {"norm": "linf"}, "norm"),
        ("deepfool", {"eps": 1.0, "kappa": 0}, "kappa"),
        ("pgd", {"eps": -0.1}, "eps"),
        ("pgd", {"eps": 2.0}, "eps"),
        ("pgd", {"eps": "big"}, "eps"),
        ("pgd", {"steps": 0}, "steps"),
        ("pgd", {"steps": 2.5}, "steps"),
        ("pgd", {"step_size": "x"}, "step_size"),
        ("pgd", {"norm": "l3"}, "norm"),
        ("cw", {"kappa": -1}, "kappa"),
        ("cw", {"lr": 0}, "lr"),
        ("cw", {"binary_search_steps": True}, "binary_search_steps"),
        ("cw", {"initial_c": float("nan")}, "initial_c"),
        ("deepfool", {"candidates": 1}, "candidates"),
        ("deepfool", {"overshoot": -0.5}, "overshoot"),
    ],
)
def test_bad_attack_settings_raise_one_clear_error(name, params, words):
    with pytest.raises(TrendError, match=words):
        make_attack(name, **params)


def test_labels_made_under_inference_mode_are_accepted():
    model = tiny_model(1, 4)
    x, _ = tiny_batch(3, 1, 4)
    with torch.inference_mode():
        y = model(x).argmax(1)
    result = PGD(eps=0.1, steps=2)(model, x, y)
    assert result.clean_correct.all()


def test_bad_run_input_raises_trend_error():
    model = tiny_model(1, 4)
    x, y = tiny_batch(3, 1, 4)
    with pytest.raises(TrendError, match="labels"):
        PGD(eps=0.1, steps=1)(model, x, y[:2])
    with pytest.raises(TrendError, match="eps"):
        PGD(eps=0.1, steps=1).run(model, x, y, epsilons=[])
    with pytest.raises(TrendError, match="eps"):
        PGD(eps=0.1, steps=1).run(model, x, y, epsilons=[None])
    with pytest.raises(TrendError, match="eps"):
        DeepFool().run(model, x, y, epsilons=[-1.0])


def test_success_is_judged_by_forwarding_only_the_images_an_attack_moved(zoo_model, digits):
    """CW returns the images it never fooled unchanged: their verdict is the clean one, no forward pass needed."""
    model = zoo_model(FP)
    x, y = digits.tensors("test", limit=40)
    rows = []
    hook = model.register_forward_hook(lambda _m, inputs, _o: rows.append(len(inputs[0])))
    try:
        attack = CarliniWagnerL2(steps=20, lr=0.05, binary_search_steps=1, initial_c=1.0)
        result = attack.run(model, x, y, [None], speedup=True)[0]  # iterations on the twin, verdicts on the model
    finally:
        hook.remove()
    moved = int((result.x_adv != x).flatten(1).any(1).sum())
    assert 0 < moved < len(x)
    assert rows == [len(x), moved]  # the clean verdicts, then the moved images only
    assert torch.equal(result.success, result.clean_correct & (predict(model, result.x_adv) != y))
