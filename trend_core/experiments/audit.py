"""Robustness audit: is a model's or a majority-vote ensemble's robustness real, or an artefact of the attack?

``run_audit`` runs a battery of attacks at each eps and reports, per attack, the robust accuracy (the share of
images still classified correctly, for an ensemble the expectation over its random tie-break), and the worst
case per image: an image counts as robust only if it is right on the clean image and survives every attack.
The battery (``battery_plan``) holds today's A-GD figure, APGD with the cross-entropy and the DLR loss (a vote
gets its loss averaged over tie-break draws: EOT), APGD-CE through the other backward passes of a
non-differentiable input transform (BPDA: identity, smooth), the gradient-free Square attack, and transfer
from surrogate zoo models outside the audited set (and from a vote of them). Sanity flags, computed from the
numbers, say when the figures should not be trusted (``audit_flags``). Every attack's result is kept in the
results store, so a rerun is a lookup and an interrupted audit resumes at the first attack not yet done.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
import torch.nn as nn

from trend_core.attacks.apgd import APGD
from trend_core.attacks.base import check_eps, check_int, predict
from trend_core.attacks.ensemble_pgd import EnsemblePGD
from trend_core.attacks.pgd import PGD
from trend_core.attacks.square import Square
from trend_core.config.labels import model_labels
from trend_core.config.specs import ModelSpec
from trend_core.config.user_models import UserModelName, parse_model_name
from trend_core.errors import TrendError
from trend_core.experiments.attack_cache import attack_cached
from trend_core.experiments.audit_flags import SANITY_EPS, AuditFlag, BatteryAttack, audit_flags
from trend_core.experiments.eval_data import evaluation_data
from trend_core.experiments.parallel_sources import prefetch_in_workers
from trend_core.experiments.transfer_keys import CACHE_VERSION, attack_identity
from trend_core.experiments.transfer_result import json_safe
from trend_core.models.zoo import Zoo
from trend_core.nn.bpda import backward_differs, with_backward
from trend_core.nn.vote import MajorityVote
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.options import RunOptions, run_options
from trend_core.storage.store import content_key, model_fingerprint, resolve_cache

VERSION = "audit/v1"
LEVELS = ("smoke", "quick", "thorough")  # smoke: the mini reproduction's check of the pipeline, no verdict
AGD_STEPS = 20  # today's A-GD figure, as the TREND builder computes it
TRANSFER_STEPS = 40


def check_level(level: str) -> str:
    """``level`` if it names an audit level; otherwise one sentence listing the levels (UI, CLI and jobs)."""
    if level not in LEVELS:
        raise TrendError(f"The audit level is one of {', '.join(LEVELS)}, got {level!r}.")
    return level


@dataclass(frozen=True)
class Budget:
    """How hard a level attacks: APGD steps and restarts, Square queries, tie-break draws (EOT) for a vote, and
    how many surrogate models to transfer from (None: every other zoo model of the dataset)."""

    steps: int
    restarts: int
    queries: int
    draws: int
    surrogates: int | None


LEVEL_BUDGETS = {
    "smoke": Budget(10, 1, 100, 2, 1),
    "quick": Budget(100, 1, 1000, 4, 3),
    "thorough": Budget(200, 3, 5000, 8, None),
}


@dataclass
class AuditReport:
    """Robust accuracy per attack and eps, the per-image worst case per eps, and the sanity flags."""

    robust: pd.DataFrame  # attack, eps, robust_accuracy, n_images, kind
    worst_case: pd.DataFrame  # eps, robust_accuracy
    flags: list[AuditFlag]
    models: list[str] = field(default_factory=list)
    ensemble: bool = False
    level: str = "quick"
    epsilons: list[float] = field(default_factory=list)
    clean_accuracy: float = math.nan
    n_images: int = 0
    notes: list[str] = field(default_factory=list)
    worst_per_image: dict[float, list[float]] = field(default_factory=dict)  # eps -> each image's worst case

    def fired(self) -> list[AuditFlag]:
        return [f for f in self.flags if f.fired]

    def to_dict(self) -> dict:
        """Everything above as JSON-ready data (NaN -> None)."""
        return json_safe(
            {
                "models": self.models,
                "ensemble": self.ensemble,
                "level": self.level,
                "epsilons": self.epsilons,
                "n_images": self.n_images,
                "clean_accuracy": self.clean_accuracy,
                "robust": self.robust.to_dict(orient="records"),
                "worst_case": self.worst_case.to_dict(orient="records"),
                "flags": [{"name": f.name, "fired": f.fired, "sentence": f.sentence} for f in self.flags],
                "notes": self.notes,
            }
        )


# ----------------------------------------------------------------------------- the battery
def battery_plan(
    target: nn.Module,
    epsilons: Sequence[float],
    level: str,
    surrogates: Sequence[nn.Module] = (),
    surrogate_names: Sequence[str] = (),
    seed: int = 0,
) -> list[BatteryAttack]:
    """The attacks an audit runs on ``target`` (a model or a MajorityVote) at ``epsilons``, plus APGD-CE (each
    backward pass) and Square at SANITY_EPS with a quarter of the budget. ``quick``: APGD 100 steps and 1 restart
    (and 50 steps, to check it converged), Square 1,000 queries, EOT over 4 tie-break draws, up to 3 surrogates;
    ``smoke`` (the mini reproduction's check that the pipeline runs; no verdict): APGD 10 steps, 1 restart, Square
    100 queries, 2 draws, 1 surrogate; ``thorough``: APGD 200 steps and 3 restarts (and 100 steps, 1 restart),
    Square 5,000 queries, 8 draws, every surrogate."""
    budget = LEVEL_BUDGETS[level]
    steps, restarts, queries = budget.steps, budget.restarts, budget.queries
    is_vote = isinstance(target, MajorityVote)
    draws = budget.draws if is_vote else 1
    eps = sorted(float(e) for e in epsilons)
    sanity = [] if SANITY_EPS in eps else [SANITY_EPS]  # a cheaper budget suffices there: all should fall
    top = max(eps)

    def apgd(loss: str, n: int, r: int) -> APGD:
        return APGD(top, steps=n, restarts=r, loss=loss, eot_draws=draws, seed=seed)

    plan = [
        BatteryAttack(
            "A-GD",
            "baseline",
            EnsemblePGD("agd", top, steps=AGD_STEPS, seed=seed),
            target if is_vote else MajorityVote([target], seed),
            eps,
        )
    ]
    plan.append(BatteryAttack("APGD-CE", "whitebox", apgd("ce", steps, restarts), target, eps, "ce"))
    short = f"APGD-CE ({steps // 2} steps{', 1 restart' if restarts > 1 else ''})"
    plan.append(BatteryAttack(short, "whitebox", apgd("ce", steps // 2, 1), target, eps, "ce-short"))
    plan.append(BatteryAttack("APGD-DLR", "whitebox", apgd("dlr", steps, restarts), target, eps))
    variants = [("APGD-CE", target, "ce")]
    for mode in ("identity", "smooth"):
        if backward_differs(target, mode):
            label = f"APGD-CE ({mode} BPDA)"
            plan.append(
                BatteryAttack(
                    label, "whitebox", apgd("ce", steps, restarts), with_backward(target, mode), eps, f"bpda-{mode}"
                )
            )
            variants.append((label, with_backward(target, mode), f"bpda-{mode}"))
    plan.append(BatteryAttack("Square", "blackbox", Square(top, queries=queries, seed=seed), target, eps))
    if sanity:
        for label, source, group in variants:
            plan.append(BatteryAttack(label, "whitebox", apgd("ce", steps // 4, 1), source, sanity, group))
        plan.append(BatteryAttack("Square", "blackbox", Square(top, queries=queries // 4, seed=seed), target, sanity))
    chosen = list(zip(surrogate_names, surrogates))
    for name, model in chosen:
        plan.append(
            BatteryAttack(
                f"transfer from {name}",
                "transfer",
                PGD(top, steps=TRANSFER_STEPS, seed=seed),
                model,
                eps,
            )
        )
    if len(chosen) >= 2:
        vote = MajorityVote([m for _, m in chosen], seed, [n for n, _ in chosen])
        plan.append(
            BatteryAttack(
                "transfer from a vote of the surrogates",
                "transfer",
                EnsemblePGD("agd", top, steps=TRANSFER_STEPS, seed=seed),
                vote,
                eps,
            )
        )
    return plan


# ----------------------------------------------------------------------------- running
def run_audit(
    models: nn.Module | str | Sequence[nn.Module | str],
    *,
    epsilons: Sequence[float],
    ensemble: bool | None = None,
    level: str = "quick",
    data: Any = None,
    zoo: Any = None,
    surrogates: Sequence[nn.Module | str] | None = None,
    options: RunOptions | None = None,
    **keywords: Any,
) -> AuditReport:
    """Audit one model, or the majority vote of several (``ensemble``; default: a vote when several are given).

    ``models``: nn.Modules that map pixels in [0, 1] to logits (your own, or zoo-loaded) and/or zoo model names,
    loaded from ``zoo`` (a Zoo or its folder; default $TREND_HOME); ``epsilons``: L-inf budgets in (0, 1];
    ``level``: smoke, quick or thorough; ``data``: None (the models' own test split), a DatasetBundle, an (x, y)
    pair of tensors or the models' dataset name; ``surrogates``: models or zoo names to transfer from (default:
    the zoo's most accurate other models of the dataset, as many as the level allows, when a zoo is given or
    names are audited; none otherwise); ``options`` (or its fields as keywords, ``runtime.options``): ``limit`` the first N images, ``cache`` the
    results store (None: none), ``device``, ``progress(fraction, message)``, ``executor`` ("local" keeps the
    battery in this process; by default small-image zoo models are attacked one per core in worker processes,
    with the same results); the audit's attacks fix their own profile, so ``profile`` is not used; ``cancel()``
    stops a battery running in worker processes within half a second (TransferCancelled; finished attacks stay
    stored; in this process ``progress`` is called between attacks, where a job stops). Bad input raises a
    TrendError before any attack runs.

    >>> report = run_audit([my_a, my_b], epsilons=[0.1], data=(x, y))   # doctest: +SKIP
    >>> report.worst_case                                                # doctest: +SKIP
    """
    items = [models] if isinstance(models, (nn.Module, str)) else list(models)
    if not items:
        raise TrendError("Pick a model to audit (or several, for their majority vote).")
    ensemble = len(items) > 1 if ensemble is None else bool(ensemble)
    opts = run_options(options, keywords, "run_audit")
    limit, progress = opts.limit, opts.progress
    given: list = list(epsilons) if isinstance(epsilons, (list, tuple)) else [epsilons]
    eps_list: list[float] = sorted({float(check_eps(e) or 0.0) for e in given})  # check_eps refuses None
    if not eps_list:
        raise TrendError("Give at least one eps.")
    check_level(level)
    if limit is not None:
        limit = check_int("The image limit", limit)
    uses_zoo = zoo is not None or any(isinstance(m, str) for m in items)
    zoo = (zoo if isinstance(zoo, Zoo) else Zoo(zoo)) if uses_zoo else None
    members, zoo_names = resolve_models(items, zoo)
    if not ensemble and len(members) > 1:
        raise TrendError(
            f"Auditing {len(members)} models needs ensemble=True (their majority vote); audit one model otherwise."
        )
    specs = [spec for m in members if isinstance(spec := getattr(m, "spec", None), (ModelSpec, UserModelName))]
    if len({s.dataset for s in specs}) > 1:
        raise TrendError("The audited models come from different datasets; pick models of one dataset.")
    dev = resolve_device(opts.device)
    members = [m.to(dev) for m in members]
    labels = model_labels(members)
    names = [n or label for n, label in zip(zoo_names, labels)]  # the report's: zoo names, else labels
    target = MajorityVote(members, 0, labels) if ensemble else members[0]
    x, y = evaluation_data(members, data, "test", limit)
    x, y = (t.clone() if t.is_inference() else t for t in (x, y))
    x, y = x.to(dev), y.to(dev)
    store = resolve_cache(opts.cache)
    if surrogates is None:
        surrogate_names = pick_surrogates(zoo, specs, level) if zoo is not None and specs else []
        sources = [zoo.load(n, dev) for n in surrogate_names] if zoo is not None else []
    else:
        sources, _ = resolve_models(list(surrogates), zoo if zoo is not None else Zoo(), what="surrogate")
        sources = [m.to(dev) for m in sources]
    surrogate_labels = model_labels(sources + members)[: len(sources)]
    plan = battery_plan(target, eps_list, level, sources, surrogate_labels)

    data_key = content_key(VERSION, "data", x, y)
    scores: dict[tuple[str, float], torch.Tensor] = {}
    clean = correctness(target, x, y)
    if _prefetch_battery(plan, target, x, y, data_key, store, dev, opts.executor, progress, opts.cancel):
        progress = None  # the battery ran one attack per core; the loop below reads the store
    costs = [attack_cost(item) for item in plan]  # the bar moves in proportion to the work, not per attack
    total, done = sum(costs), 0.0
    for item, cost in zip(plan, costs):
        if progress is not None:
            progress(done / total, f"{item.label} at eps {', '.join(f'{e:g}' for e in item.epsilons)}")
        for eps, score in zip(item.epsilons, attack_scores(item, target, x, y, data_key, store)):
            scores[(item.label, eps)] = score
        done += cost
    if opts.progress is not None:
        opts.progress(1.0, "done")

    n = len(y)
    rows = [
        {
            "attack": item.label,
            "eps": eps,
            "robust_accuracy": float(torch.minimum(scores[(item.label, eps)], clean).mean()),
            "n_images": n,
            "kind": item.kind,
        }
        for item in plan
        for eps in item.epsilons
    ]
    robust = pd.DataFrame(rows, columns=["attack", "eps", "robust_accuracy", "n_images", "kind"])
    worst_rows, worst_per_image = [], {}
    for eps in sorted({e for item in plan for e in item.epsilons}):
        per_image = clean.clone()
        for item in plan:
            if eps in item.epsilons:
                per_image = torch.minimum(per_image, scores[(item.label, eps)])
        worst_rows.append({"eps": eps, "robust_accuracy": float(per_image.mean())})
        worst_per_image[eps] = [float(v) for v in per_image.cpu()]
    worst = pd.DataFrame(worst_rows, columns=["eps", "robust_accuracy"])
    notes = []
    if not sources:
        notes.append(
            "No other zoo model of this dataset to transfer from: the transfer attacks were skipped."
            if zoo is not None and surrogates is None
            else "No surrogate models to transfer from (surrogates= or zoo=): the transfer attacks were skipped."
        )
    flags = audit_flags(robust, worst, plan, n)
    report = AuditReport(robust, worst, flags, names, bool(ensemble), level, eps_list, float(clean.mean()), n, notes)
    report.worst_per_image = worst_per_image
    return report


def resolve_models(items: list, zoo: Zoo | None, what: str = "model") -> tuple[list[nn.Module], list[str | None]]:
    """The modules ``items`` name (nn.Modules as given, zoo names, imported ``user/...`` ones too, loaded on the
    CPU) without repeats, and each one's canonical zoo name (None for a module given as such); a TrendError for
    anything else."""
    modules: list[nn.Module] = []
    names: list[str | None] = []
    for item in items:
        if isinstance(item, nn.Module):
            if not any(item is m for m in modules):
                modules.append(item)
                names.append(None)
            continue
        if not isinstance(item, str) or zoo is None:
            raise TrendError(
                f"A {what} to audit is an nn.Module (pixels in [0, 1] -> logits) or a zoo model name, got {item!r}."
            )
        try:
            name = parse_model_name(item).name
        except TrendError:
            raise
        except Exception:  # noqa: BLE001 - any unparsable name is one sentence
            raise TrendError(f"{item!r} is not a model name.") from None
        if not zoo.has(name):
            how = f"zoo import {name} FILE.pt2" if name.startswith("user/") else f"train {name}"
            raise TrendError(f"{name} is not in the zoo at {zoo.root}; add it first (`trend {how}`).")
        if name not in names:
            modules.append(zoo.load(name, "cpu"))
            names.append(name)
    return modules, names


def attack_cost(item: BatteryAttack) -> float:
    """Rough model evaluations an attack of the battery spends per image: iterations (APGD steps x restarts, PGD
    steps, Square queries) x members of the model attacked x 3 for a gradient step (forward and backward) or 1
    for a query, x its eps values; for weighing the progress bar."""
    attack = item.attack
    if isinstance(attack, Square):
        per_eps = attack.queries * attack.restarts
    else:
        per_eps = 3 * int(getattr(attack, "steps", 1)) * int(getattr(attack, "restarts", 1))
    members = len(item.source.members) if isinstance(item.source, MajorityVote) else 1
    return float(per_eps * members * len(item.epsilons))


def pick_surrogates(zoo, specs, level: str) -> list[str]:
    """Zoo models of the audited dataset outside the audited set: the most accurate ones, as many as the level's
    budget says (quick: 3, thorough: all)."""
    audited = {s.name for s in specs}  # (a module's spec counts: a zoo-loaded model is not its own surrogate)
    metas = [m for m in zoo.list(specs[0].dataset, imported_networks=True) if m.get("name") not in audited]
    metas.sort(key=lambda m: (-float(m.get("test_acc") or 0.0), m.get("name", "")))
    count = LEVEL_BUDGETS[level].surrogates
    return [m["name"] for m in (metas if count is None else metas[:count])]


def correctness(target: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per image, the probability the target is right (a vote: the expectation over its tie-break)."""
    if isinstance(target, MajorityVote):
        return target.expected_accuracy(x, y).float().to(x.device)
    return (predict(target, x) == y).float()


def _prefetch_battery(
    plan: list[BatteryAttack], target: nn.Module, x, y, data_key: str, store, device, executor, progress, cancel
) -> bool:
    """Small images on the CPU: the battery's attacks whose scores are not stored yet run one per core in worker
    processes (``parallel_sources``), each stored as ``attack_cached`` stores it; whether they did."""
    target_fp = model_fingerprint(target)
    points = [
        (item.source, item.attack, item.epsilons)
        for item in plan
        if not all(store.has(k) for k in score_keys(item, target_fp, data_key))
    ]
    return prefetch_in_workers(points, x, y, [], store, device, executor, progress, cancel=cancel)


def score_keys(item: BatteryAttack, target_fp: str, data_key: str) -> list[str]:
    """Store keys of the target's per-image scores under ``item``, one per eps of the item."""
    identity, source_fp = attack_identity(item.attack), model_fingerprint(item.source)
    return [content_key(VERSION, "score", target_fp, source_fp, identity, eps, data_key) for eps in item.epsilons]


def attack_scores(
    item: BatteryAttack, target: nn.Module, x: torch.Tensor, y: torch.Tensor, data_key: str, store
) -> list[torch.Tensor]:
    """Per eps of ``item``, the target's correctness on the images ``item`` crafted: from the store when known,
    else attacked (its images cached the way transfer runs cache theirs) and evaluated."""
    keys = score_keys(item, model_fingerprint(target), data_key)
    found = [store.get(k) for k in keys]
    missing = [i for i, v in enumerate(found) if v is None]
    if missing:
        eps_missing = [item.epsilons[i] for i in missing]
        entries, _ = attack_cached(
            item.source,
            item.attack,
            x,
            y,
            eps_missing,
            store,
            content_key(CACHE_VERSION, "data", x, y),
            model_fingerprint(item.source),
        )
        for i, entry in zip(missing, entries):
            adv = entry["x_adv"].to(x.device)
            assert_in_ball(x, adv, item.epsilons[i])
            score = correctness(target, adv, y).cpu()
            store.set(keys[i], score)
            found[i] = score
    return [v.to(x.device).float() for v in found]


def assert_in_ball(x: torch.Tensor, adv: torch.Tensor, eps: float) -> None:
    """Every adversarial image lies in [0, 1] and within eps of its image (a broken attack must not count)."""
    if adv.shape != x.shape or adv.min() < 0 or adv.max() > 1 or (adv - x).abs().max() > eps + 1e-5:
        raise RuntimeError("An attack left the eps-ball or [0, 1]; its result is not counted.")


# ----------------------------------------------------------------------------- summaries
def summary_row(label: str, report: AuditReport, eps: float) -> dict:
    """One line of a comparison table: today's A-GD figure against the audit's worst case at ``eps``, and the
    flags that fired."""
    agd = report.robust[(report.robust["attack"] == "A-GD") & (report.robust["eps"] == eps)]["robust_accuracy"]
    worst = report.worst_case[report.worst_case["eps"] == eps]["robust_accuracy"]
    return {
        "model": label,
        "eps": eps,
        "clean_accuracy": report.clean_accuracy,
        "agd_accuracy": float(agd.iloc[0]) if len(agd) else math.nan,
        "worst_case_accuracy": float(worst.iloc[0]) if len(worst) else math.nan,
        "flags": ", ".join(f.name for f in report.fired()) or "none",
    }


SUMMARY_COLUMNS = ["model", "eps", "clean_accuracy", "agd_accuracy", "worst_case_accuracy", "flags"]


def audit_ensemble_and_members(
    zoo,
    names: Sequence[str],
    eps: float,
    *,
    level: str = "quick",
    labels: Sequence[str] | None = None,
    reports: dict[str, AuditReport] | None = None,
    options: RunOptions | None = None,
    **keywords: Any,
) -> tuple[pd.DataFrame, dict[str, list[AuditFlag]]]:
    """Audit the majority vote of ``names`` and each member alone at ``eps``: a table (SUMMARY_COLUMNS, the
    ensemble first) and every audit's flags by row label. ``labels``: the members' labels (default their short
    names); ``reports``: pass a dict to get every AuditReport by row label (e.g. its per-image worst case);
    ``options`` (or its fields as keywords) as in ``run_audit``."""
    opts = run_options(options, keywords, "audit_ensemble_and_members")
    progress = opts.progress
    labels = list(labels) if labels is not None else [parse_model_name(n).short_name for n in names]
    jobs = [(" + ".join(labels), list(names), True)] + [(lab, [n], False) for lab, n in zip(labels, names)]
    weights = [len(members) for _, members, _ in jobs]  # the vote's audit attacks every member: N times one's
    starts = [sum(weights[:i]) / sum(weights) for i in range(len(jobs))]
    rows, flags = [], {}
    for i, (label, members, vote) in enumerate(jobs):

        def part(fraction: float | None, message: str | None, i: int = i, label: str = label) -> None:
            if progress is not None:
                progress(starts[i] + (fraction or 0.0) * weights[i] / sum(weights), f"{label}: {message}")

        report = run_audit(
            members,
            zoo=zoo,
            ensemble=vote,
            epsilons=[eps],
            level=level,
            options=dataclasses.replace(opts, progress=part),
        )
        rows.append(summary_row(label, report, eps))
        flags[label] = report.flags
        if reports is not None:
            reports[label] = report
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS), flags
