"""The robustness audit: run_audit's report, the store (rerun without attacks), the flags on hand-made tables,
and `trend audit` on the command line."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import FP, HT, Q1, TEST_ZOO_DIR

import trend_core.experiments.audit as audit_module
from trend_core.attacks.base import Attack
from trend_core.cli import main
from trend_core.errors import TrendError
from trend_core.experiments.audit import AuditReport, Budget, run_audit
from trend_core.experiments.audit_flags import SANITY_EPS, AuditFlag, BatteryAttack, audit_flags
from trend_core.storage.store import MemoryStore

LIMIT = 24


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", autouse=True)
def small_budget():
    """The quick battery with tiny budgets (same attacks, same code paths): the suite stays fast."""
    saved = dict(audit_module.LEVEL_BUDGETS)
    audit_module.LEVEL_BUDGETS["quick"] = Budget(steps=8, restarts=1, queries=40, draws=2, surrogates=1)
    yield
    audit_module.LEVEL_BUDGETS.clear()
    audit_module.LEVEL_BUDGETS.update(saved)


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    """These tests count and interrupt attacks run in this process; worker processes (the default on an idle
    machine) are checked against it in test_worker_threads.py."""
    monkeypatch.setenv("TREND_EXECUTOR", "local")


@pytest.fixture(scope="module")
def zoo_dir(zoo_model):
    for name in (FP, Q1, HT):
        zoo_model(name)
    return TEST_ZOO_DIR


@pytest.fixture(scope="module")
def fp_report(zoo_dir):
    store = MemoryStore()
    return run_audit(zoo=zoo_dir, models=[FP], ensemble=False, epsilons=[0.1], limit=LIMIT, cache=store), store


def test_report_holds_every_attack_the_worst_case_and_the_flags(fp_report):
    report, _ = fp_report
    assert isinstance(report, AuditReport)
    assert list(report.robust.columns[:4]) == ["attack", "eps", "robust_accuracy", "n_images"]
    attacks = set(report.robust["attack"])
    assert {"A-GD", "APGD-CE", "APGD-DLR", "Square"} <= attacks
    assert any(a.startswith("transfer from") for a in attacks)  # other zoo models serve as surrogates
    assert (report.robust["n_images"] == LIMIT).all()
    assert set(report.worst_case["eps"]) == {0.1, SANITY_EPS}
    for eps, worst in report.worst_case.itertuples(index=False):
        at = report.robust[report.robust["eps"] == eps]["robust_accuracy"]
        assert worst <= at.min() + 1e-9  # an image is robust only if it survives every attack
    assert report.worst_case.set_index("eps").at[SANITY_EPS, "robust_accuracy"] <= 0.05
    assert 0 < report.worst_case.set_index("eps").at[0.1, "robust_accuracy"] < report.clean_accuracy
    names = {f.name for f in report.flags}
    assert names == {
        "gradient_masking",
        "large_eps_not_zero",
        "not_monotone",
        "not_converged",
        "bpda_identity_stronger",
    }
    assert all(isinstance(f, AuditFlag) and f.sentence.endswith(".") for f in report.flags)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["robust"] and data["worst_case"] and len(data["flags"]) == 5


def test_rerun_comes_from_the_store_without_attacking(fp_report, zoo_dir, monkeypatch):
    report, store = fp_report

    def no_attacks(*args, **kwargs):
        raise AssertionError("a cached audit ran an attack")

    monkeypatch.setattr(Attack, "run", no_attacks)
    again = run_audit(zoo=zoo_dir, models=[FP], ensemble=False, epsilons=[0.1], limit=LIMIT, cache=store)
    pd.testing.assert_frame_equal(again.robust, report.robust)
    pd.testing.assert_frame_equal(again.worst_case, report.worst_case)


class Interrupted(Exception):
    """Stands for Ctrl-C (a real KeyboardInterrupt would stop pytest itself)."""


def test_an_interrupted_audit_resumes_where_it_stopped(zoo_dir, monkeypatch):
    store, calls, armed = MemoryStore(), [], [True]
    real_run = Attack.run

    def flaky(self, *args, **kwargs):
        calls.append(self.name)
        if armed[0] and len(calls) == 3:
            armed[0] = False
            raise Interrupted
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(Attack, "run", flaky)
    with pytest.raises(Interrupted):
        run_audit(zoo=zoo_dir, models=[FP], ensemble=False, epsilons=[0.05], limit=8, cache=store)
    done_before = len(calls) - 1
    calls.clear()
    run_audit(zoo=zoo_dir, models=[FP], ensemble=False, epsilons=[0.05], limit=8, cache=store)
    total = len(calls)
    calls.clear()
    run_audit(zoo=zoo_dir, models=[FP], ensemble=False, epsilons=[0.05], limit=8, cache=store)
    assert done_before == 2 and total > 0 and not calls  # the two finished attacks were not redone


def test_an_ht_ensemble_gets_the_bpda_and_eot_attacks(zoo_dir):
    report = run_audit(zoo=zoo_dir, models=[FP, HT], ensemble=True, epsilons=[0.1], limit=12, cache=MemoryStore())
    attacks = set(report.robust["attack"])
    assert {"APGD-CE (identity BPDA)", "APGD-CE (smooth BPDA)"} <= attacks
    flag = next(f for f in report.flags if f.name == "bpda_identity_stronger")
    assert "Not applicable" not in flag.sentence
    assert report.ensemble and report.models == [FP, HT]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"names": [FP, Q1], "ensemble": False}, "ensemble=True"),
        ({"names": ["digits/resnet18-w0.25/Q4/sgd/s9"]}, "not in the zoo"),
        ({"names": ["nonsense"]}, "nonsense"),
        ({"epsilons": [2.0]}, "eps"),
        ({"epsilons": []}, "eps"),
        ({"level": "extreme"}, "quick"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_input_is_one_sentence_before_any_attack(zoo_dir, monkeypatch, kwargs, words):
    monkeypatch.setattr(Attack, "run", lambda *a, **k: pytest.fail("attacked despite bad input"))
    args = {"names": [FP], "ensemble": False, "epsilons": [0.1], "limit": 8, **kwargs}
    names = args.pop("names")
    with pytest.raises(TrendError, match=words):
        run_audit(zoo=zoo_dir, models=names, cache=MemoryStore(), **args)


# ----------------------------------------------------------------------------- flags from the data
def table(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [{"attack": a, "eps": e, "robust_accuracy": r, "n_images": 100, "kind": k} for a, e, r, k in rows]
    )


PLAN = [
    BatteryAttack("APGD-CE", "whitebox", None, None, [0.1], "ce"),
    BatteryAttack("APGD-CE (50 steps)", "whitebox", None, None, [0.1], "ce-short"),
    BatteryAttack("APGD-CE (identity BPDA)", "whitebox", None, None, [0.1], "bpda-identity"),
    BatteryAttack("APGD-CE (smooth BPDA)", "whitebox", None, None, [0.1], "bpda-smooth"),
]


def flags_of(rows) -> dict[str, bool]:
    robust = table(rows)
    worst = robust.groupby("eps", as_index=False)["robust_accuracy"].min()
    return {f.name: f.fired for f in audit_flags(robust, worst, PLAN, 100)}


HEALTHY = [
    ("A-GD", 0.1, 0.40, "baseline"),
    ("APGD-CE", 0.1, 0.30, "whitebox"),
    ("APGD-CE (50 steps)", 0.1, 0.31, "whitebox"),
    ("APGD-CE (identity BPDA)", 0.1, 0.29, "whitebox"),
    ("APGD-CE (smooth BPDA)", 0.1, 0.28, "whitebox"),
    ("Square", 0.1, 0.33, "blackbox"),
    ("transfer from X", 0.1, 0.80, "transfer"),
    ("APGD-CE", 0.5, 0.0, "whitebox"),
    ("Square", 0.5, 0.0, "blackbox"),
]


def test_no_flag_fires_on_a_healthy_table():
    assert not any(flags_of(HEALTHY).values())


@pytest.mark.parametrize(
    "change, flag",
    [
        ({("Square", 0.1): 0.20}, "gradient_masking"),
        ({("transfer from X", 0.1): 0.10}, "gradient_masking"),
        ({("APGD-CE", 0.5): 0.30, ("Square", 0.5): 0.25}, "large_eps_not_zero"),
        ({("Square", 0.5): 0.60}, "not_monotone"),
        ({("APGD-CE (50 steps)", 0.1): 0.45}, "not_converged"),
        ({("APGD-CE (identity BPDA)", 0.1): 0.10}, "bpda_identity_stronger"),
        ({("APGD-CE (smooth BPDA)", 0.1): 0.10}, "bpda_identity_stronger"),
    ],
)
def test_each_flag_fires_on_its_symptom(change, flag):
    rows = [(a, e, change.get((a, e), r), k) for a, e, r, k in HEALTHY]
    fired = flags_of(rows)
    assert fired[flag], fired


# ----------------------------------------------------------------------------- the command line
def test_cli_audit_prints_a_table_and_flags_and_json(zoo_dir, capsys):
    home = str(zoo_dir.parent / zoo_dir.name)
    assert main(["audit", "--models", FP, "--eps", "0.1", "--limit", "8", "--home", home, "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "APGD-CE" in out and "worst case" in out and "gradient_masking" in out
    assert main(["audit", "--models", FP, "--eps", "0.1", "--limit", "8", "--home", home, "--no-cache", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"robust", "worst_case", "flags"} <= set(data)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--models", FP, Q1, "--eps", "0.1"], "--ensemble"),
        (["--models", FP, "--eps", "big"], "--eps"),
        (["--models", FP, "--eps", "3"], "eps"),
        (["--models", FP, "--eps", "0.1", "--limit", "x"], "--limit"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(zoo_dir, capsys, argv, words):
    assert main(["audit", *argv, "--home", str(zoo_dir), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("trend: error:") and words in err and "\n" not in err


def test_the_report_keeps_each_images_worst_case(fp_report):
    report, _ = fp_report
    for eps, worst in report.worst_case.itertuples(index=False):
        per_image = report.worst_per_image[eps]
        assert len(per_image) == LIMIT and sum(per_image) / LIMIT == pytest.approx(worst)


def test_the_bar_moves_in_proportion_to_each_attacks_work(fp_report, zoo_dir):
    from trend_core.config.labels import model_labels
    from trend_core.models.zoo import Zoo

    _, store = fp_report
    zoo = Zoo(zoo_dir)
    target = zoo.load(FP)
    sources = [zoo.load(name) for name in audit_module.pick_surrogates(zoo, [target.spec], "quick")]
    labels = model_labels([*sources, target])[: len(sources)]
    plan = audit_module.battery_plan(target, [0.1], "quick", sources, labels)  # what the audit below runs
    seen = []
    run_audit(
        zoo=zoo_dir,
        models=[FP],
        ensemble=False,
        epsilons=[0.1],
        limit=LIMIT,
        cache=store,
        progress=lambda f, m: seen.append((f, m)),
    )
    assert [m for _, m in seen[:-1]] == [f"{i.label} at eps {', '.join(f'{e:g}' for e in i.epsilons)}" for i in plan]
    costs = [audit_module.attack_cost(item) for item in plan]
    starts = [sum(costs[:i]) / sum(costs) for i in range(len(costs))]
    assert [f for f, _ in seen[:-1]] == pytest.approx(starts) and seen[-1] == (1.0, "done")
    apgd = next(i for i, item in enumerate(plan) if item.label == "APGD-CE")
    square = next(i for i, item in enumerate(plan) if item.label == "Square")
    assert costs[apgd] == 3 * 8  # 8 steps of a forward and a backward pass (the sanity eps is an attack of its own)
    assert costs[square] == 40  # 40 queries, one forward pass each


def test_trend_audit_says_whether_the_vote_beats_its_members_under_the_worst_case(zoo_dir, monkeypatch):
    from trend_core.models.zoo import Zoo
    from trend_core.runtime.jobs import Job, JobManager
    from trend_core.service.vote_jobs import submit_trend_audit

    seen = []
    original = Job.progress
    monkeypatch.setattr(Job, "progress", lambda self, f=None, m=None: seen.append((f, m)) or original(self, f, m))
    job = submit_trend_audit(
        Zoo(zoo_dir), MemoryStore(), [FP, Q1], 0.1, limit=8, device="cpu", manager=JobManager(sync=True)
    )
    assert job.error is None
    fractions = [f for f, _ in seen if f is not None]
    assert fractions == sorted(fractions)
    first = {m.split(":")[0]: f for f, m in reversed(seen) if m}
    # the vote's audit attacks both members (weight 2 of 4), then each member alone (1 of 4)
    assert first["FP-s0 + Q1-s0"] == 0 and first["FP-s0"] == pytest.approx(0.5) and first["Q1-s0"] == 0.75
    result = job.result
    assert list(result["per_image"].columns) == ["ensemble", "FP-s0", "Q1-s0"] and len(result["per_image"]) == 8
    worst = result["summary"].set_index("model")["worst_case_accuracy"]
    assert result["per_image"]["ensemble"].mean() == pytest.approx(worst["FP-s0 + Q1-s0"])
    assert result["per_image"]["Q1-s0"].mean() == pytest.approx(worst["Q1-s0"])
    assert result["sentence"].startswith("Under the audit's worst case at eps 0.1")
    assert set(result["comparison"]["member"]) == {"FP-s0", "Q1-s0"}
    assert result["verdict"] in ("held", "did not hold", "inconclusive")
