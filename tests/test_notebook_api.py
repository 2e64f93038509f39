"""The Python API as a notebook user meets it: ``import trend_core as tl`` and public calls only.

Each test is one trap a user fell into (a documented name missing, a default that silently did more or other
than asked, a result that could not answer "how robust is it?"), written the way that user would write it.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import FP, Q1

import trend_core as tl


@pytest.fixture
def pair(zoo_model, digits):
    """Two trained digits models and 24 test images."""
    x, y = digits.tensors("test", 24)
    return [zoo_model(FP), zoo_model(Q1)], x.clone(), y.clone()


# ----------------------------------------------------------------------------- robustness_sweep
def test_robustness_sweep_attacks_only_the_ensemble_unless_members_are_asked_for(pair):
    models, x, y = pair
    x, y = x[:12], y[:12]
    said: list[str] = []
    sweep = tl.robustness_sweep(
        models,
        [0.1],
        ["agd"],
        data=(x, y),
        steps=2,
        progress=lambda fraction, message: message and said.append(message),
    )
    assert said == ["A-GD: attacking the ensemble"]  # one attack asked, one attack run
    members = sweep[sweep["model"] != "ensemble"]
    assert len(members) == 2 and members["accuracy"].isna().all()
    assert members["acc_on_ensemble_adv"].between(0, 1).all()  # free: the ensemble's images, evaluated
    said.clear()
    both = tl.robustness_sweep(
        models, [0.1], ["agd"], data=(x, y), steps=2, progress=lambda f, m: m and said.append(m), members_alone=True
    )
    assert len(said) == 3 and sum("alone" in s for s in said) == 2
    assert both[both["model"] != "ensemble"]["accuracy"].between(0, 1).all()


# ----------------------------------------------------------------------------- AttackResult's rates
def test_attack_result_says_robust_accuracy_and_what_its_success_rate_counts(pair):
    (model, _), x, y = pair
    result = tl.PGD(eps=0.1, steps=10)(model, x, y)
    with torch.no_grad():
        right_after = (model(result.x_adv).argmax(1) == y).float().mean().item()
        right_before = (model(x).argmax(1) == y).float().mean().item()
    assert abs(result.robust_accuracy - right_after) <= 1 / len(y)  # over ALL images, after the attack
    assert result.clean_accuracy == pytest.approx(right_before, abs=1 / len(y))
    assert 0.5 < result.clean_accuracy and result.robust_accuracy < result.clean_accuracy
    # success_rate: of the images the model got right, the share the attack flipped
    assert result.success_rate == pytest.approx(1 - result.robust_accuracy / result.clean_accuracy)
    summary = result.summary()
    assert summary["robust_accuracy"] == result.robust_accuracy and summary["success_rate"] == result.success_rate
    assert "robust_accuracy=" in repr(result) and "tensor" not in repr(result)  # readable in a notebook


# ----------------------------------------------------------------------------- registering an attack
class NudgeDown(tl.Attack):
    """A user's own attack: every pixel moved down by eps (clipped to the ball and [0, 1] by the base class)."""

    name = "nudge-down"

    def perturb(self, model, x, y, eps, generator):
        return x - eps


def test_a_users_attack_registers_and_is_offered_everywhere(pair):
    tl.register_attack("nudge-down", NudgeDown)
    assert "nudge-down" in tl.list_attacks() and tl.list_attacks("nudge*") == ["nudge-down"]
    assert tl.NudgeDown is NudgeDown and "NudgeDown" in dir(tl)
    attack = tl.make_attack("nudge-down", eps=0.2)
    assert isinstance(attack, NudgeDown) and attack.eps == 0.2
    (model, _), x, y = pair
    result = attack(model, x, y)
    assert result.linf.max() <= 0.2 + 1e-6 and result.linf.max() > 0.1
    matrix = tl.run_transfer(pair[0], attack, data=(x, y)).matrix()
    assert matrix.shape == (3, 3)
    with pytest.raises(tl.TrendError, match="already registered"):
        tl.register_attack("nudge-down", NudgeDown)
    with pytest.raises(tl.TrendError, match="already registered"):
        tl.register_attack("pgd", NudgeDown)
    with pytest.raises(tl.TrendError, match="subclass of trend_core.Attack"):
        tl.register_attack("not-an-attack", torch.nn.Identity)
    with pytest.raises(tl.TrendError, match="lower-case"):
        tl.register_attack("Bad Name", NudgeDown)


# ----------------------------------------------------------------------------- eps defaults
def test_pgd_without_eps_attacks_at_the_models_dataset_default(pair, digits):
    (model, _), x, y = pair
    attack = tl.PGD(steps=5)
    result = attack(model, x, y)
    assert result.eps == pytest.approx(digits.info.default_eps) and result.eps == pytest.approx(0.1)  # not 8/255
    assert result.linf.max() <= 0.1 + 1e-6 and result.linf.max() > 8 / 255
    assert "eps=0.1" in repr(result) and attack.eps is None  # the attack keeps "dataset default" for the next model
    l2 = tl.PGD(steps=5, norm="l2")(model, x, y)
    assert l2.eps == pytest.approx(0.4)  # an L2 budget is 4x the L-inf default, as the dashboard offers
    transfer = tl.run_transfer(pair[0], tl.PGD(steps=5), data=(x, y))
    assert transfer.eps == pytest.approx(0.1)
    assert tl.make_attack("pgd", steps=2)(model, x, y).eps == pytest.approx(0.1)
    bare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # a model with no dataset
    with pytest.raises(tl.TrendError, match="give eps explicitly"):
        tl.PGD()(bare, x, y)
    assert tl.PGD(eps=0.05, steps=2)(bare, x, y).eps == 0.05


# ----------------------------------------------------------------------------- pixels in [0, 1]
def test_images_in_0_255_are_refused_by_every_entry_point_with_a_hint(pair):
    models, x, y = pair
    big = x * 255
    calls = {
        "attack": lambda: tl.PGD(eps=0.1, steps=2)(models[0], big, y),
        "attack.run": lambda: tl.PGD(eps=0.1, steps=2).run(models[0], big, y, [0.05, 0.1]),
        "ensemble attack": lambda: tl.EnsemblePGD("agd", 0.1, steps=2)(tl.MajorityVote(models), big, y),
        "run_transfer": lambda: tl.run_transfer(models, tl.PGD(eps=0.1, steps=2), data=(big, y)),
        "robustness_sweep": lambda: tl.robustness_sweep(models, [0.1], ["agd"], data=(big, y), steps=2),
        "decision_boundary": lambda: tl.decision_boundary(models[0], big[0], int(y[0])),
    }
    for where, call in calls.items():
        with pytest.raises(tl.TrendError) as refused:
            call()
        message = str(refused.value)
        assert "[0, 1]" in message and "255" in message, where
        assert message.count(". ") == 0 and "\n" not in message, where  # one sentence
    nan = x.clone()
    nan[0, 0, 0, 0] = math.nan
    with pytest.raises(tl.TrendError, match="non-finite"):
        tl.PGD(eps=0.1, steps=2)(models[0], nan, y)


# ----------------------------------------------------------------------------- the audit
def small_net(seed: int) -> torch.nn.Module:
    """A user's own network (pixels in [0, 1] -> logits): no spec, no zoo; untrained is enough for the API."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))


def test_run_audit_takes_a_users_own_modules_and_data(digits):
    x, y = digits.tensors("test", 12)
    mine = [small_net(0), small_net(1)]
    report = tl.run_audit(mine, epsilons=[0.1], data=(x, y), level="smoke", surrogates=[small_net(2)])
    assert report.ensemble and report.n_images == 12 and len(report.models) == 2  # several models: their vote
    assert {"A-GD", "APGD-CE", "Square"} <= set(report.robust["attack"])
    assert report.robust["attack"].str.startswith("transfer from").any()
    worst = float(report.worst_case.set_index("eps").loc[0.1, "robust_accuracy"])
    assert 0 <= worst <= report.clean_accuracy
    alone = tl.run_audit(mine[0], epsilons=[0.1], data=(x, y), level="smoke")
    assert not alone.ensemble and any("transfer attacks were skipped" in n for n in alone.notes)
    with pytest.raises(tl.TrendError, match="pass data"):
        tl.run_audit(mine[0], epsilons=[0.1], level="smoke")  # no dataset to take images from
    with pytest.raises(tl.TrendError, match=r"\[0, 1\]"):
        tl.run_audit(mine[0], epsilons=[0.1], data=(x * 255, y), level="smoke")


# ----------------------------------------------------------------------------- discovery
def test_list_models_lists_the_zoo_and_list_presets_the_presets(linked_zoo_home, tmp_path):
    in_zoo = tl.list_models()  # $TREND_HOME's zoo, as `trend zoo list` shows it
    assert FP in in_zoo and Q1 in in_zoo and in_zoo == sorted(in_zoo)
    assert tl.list_models("*/Q1/*") == [Q1] and tl.list_models(dataset="cifar10") == []
    assert tl.list_models(home=tmp_path / "empty") == []  # a zoo not built yet holds nothing
    assert "digits" in tl.list_presets() and FP in tl.list_preset_models(preset="digits")
    assert set(tl.list_preset_models("*/Q[12]/*")) >= {Q1}


# ----------------------------------------------------------------------------- training is not silent
def test_get_or_train_says_what_it_trains_epoch_by_epoch(tmp_path, capsys):
    zoo = tl.Zoo(tmp_path / "home")
    zoo.get_or_train("digits/smallcnn/FP/sgd/s0/e3", device="cpu")
    said = capsys.readouterr().err.splitlines()
    assert "not in the zoo" in said[0] and "3 epochs" in said[0]
    assert [line.split(": epoch ")[1].split(",")[0] for line in said[1:]] == ["1/3", "2/3", "3/3"]
    assert all("val acc" in line for line in said[1:])
    zoo.get_or_train("digits/smallcnn/FP/sgd/s0/e3", device="cpu")  # in the zoo now: loaded, nothing said
    zoo.get_or_train("digits/smallcnn/FP/sgd/s1/e3", device="cpu", progress=None)  # asked to be quiet
    assert capsys.readouterr().err == ""
