"""Each page's default run, in one place: the values its widgets start at and how they become the arguments of
its submit call. The pages draw their widgets from these and the demo warm-up (``service.warmup``) submits
exactly these runs, so a warmed-up job has the key the page looks for."""

from __future__ import annotations

import math
from typing import Sequence

from trend_core.attacks.registry import ATTACK_NAMES
from trend_core.attacks.settings import attack_settings
from trend_core.config.datasets import get_info
from trend_core.config.labels import label_map, paper_picks
from trend_core.config.specs import ModelSpec
from trend_core.config.user_models import is_user_model_name
from trend_core.ensemble.selection import growing_ensembles, growth_start, select_ensembles
from trend_core.errors import TrendError
from trend_core.experiments.curve import MIN_POINTS, default_fit_eps
from trend_core.experiments.grids import measured_eps, spaced_eps
from trend_core.models.families import families, fully_trained, imported_names

# Transferability
TRANSFER_IMAGES = 360  # test images (the whole digits test split: 359)
TRANSFER_PICKED = 4  # models the source and target pickers start with
# Ensemble attacks
ENSEMBLE_INPUTS = ("FP", "Q1", "Q2")  # the paper's headline ensemble
ENSEMBLE_POINTS, ENSEMBLE_STEPS, ENSEMBLE_IMAGES = 4, 20, 100
# TM curve
CURVE_INPUTS = ("FP", "Q1")  # how much FP's attacks reach Q1
CURVE_POINTS, CURVE_STEPS, CURVE_IMAGES = 12, 20, 200
# Decision boundary
BOUNDARY_INPUTS = ("FP", "Q1")
BOUNDARY_RESOLUTION = 41
# Robustness audit
AUDIT_INPUTS = ("FP", "Q1", "Q2")
AUDIT_MEMBERS = 3  # a zoo of this many models opens on the vote of the first picks
AUDIT_POINTS, AUDIT_IMAGES, AUDIT_LEVEL = 2, 100, "quick"
# TREND builder: a pool of the paper's headline members and three more input quantizations
POOL_INPUTS = ("FP", "Q1", "Q2", "HT", "Q4", "Q8")
POOL_STEPS, POOL_IMAGES = 20, 200
BUILDER_SIZE, BUILDER_GROWTH_SIZE = 3, 4
BUILDER_CANDIDATES = 10  # TREND's ranking shows this many sets
BUILDER_STEPS, BUILDER_IMAGES = 20, 100


def picker_names(metas: Sequence[dict]) -> list[str]:
    """The zoo's model names in the order every picker lists them."""
    return list(dict.fromkeys(m["name"] for m in metas if m.get("name")))


def has_family(metas: Sequence[dict]) -> bool:
    """Whether the Transferability page's family preset has a family to offer (models that differ in one factor
    only, imported weights left out): its default run then takes every zoo model."""
    names = [n for n in picker_names(metas) if not is_user_model_name(n)]  # imported networks have no spec
    return bool(families((ModelSpec.parse(n) for n in names), imported=imported_names(metas)))


def transfer_eps(attack: str, dataset: str) -> float:
    """Where the Transferability page's eps slider starts for ``attack``."""
    default = attack_settings(attack, dataset).eps.default
    return round(float(default) if default is not None else 0.0, 4)  # type: ignore[arg-type]  # (a number)


def transfer_limit(total: int) -> int:
    """Where the Transferability page's image slider starts (a test split of 20 or fewer is used whole)."""
    return min(total, TRANSFER_IMAGES) if total > 20 else total


def transfer_params(attack: str, dataset: str, eps: float, steps: int, **more) -> dict:
    """The attack's parameters from the page's eps (0 = no clip for minimum-norm attacks) and steps."""
    settings = attack_settings(attack, dataset)
    given = {"eps": (eps or None) if settings.minimum_norm else eps, "steps": int(steps), **more}
    return settings.complete(**given)


def transfer_request(metas: Sequence[dict], dataset: str, total: int) -> dict | None:
    """The Transferability page's default run (its family preset "all models in the zoo", the first attack at its
    defaults) as ``submit_transfer`` keywords; None when the zoo has no family (the page then asks for picks)."""
    names = picker_names(metas)
    if len(names) < 2 or not has_family(metas):
        return None
    members = names
    attack = ATTACK_NAMES[0]
    steps = attack_settings(attack, dataset).setting("steps").default
    return dict(
        sources=members,
        targets=members,
        attack=attack,
        params=transfer_params(attack, dataset, transfer_eps(attack, dataset), int(steps)),  # type: ignore[call-overload]
        limit=transfer_limit(total),
    )


def ensemble_eps(dataset: str, low: float, high: float, points: int) -> list[float]:
    """The Ensemble attacks page's eps values: ``points`` from ``low`` to ``high`` on its slider's grid."""
    return spaced_eps(low, high, int(points), ensemble_eps_step(dataset))


def ensemble_eps_step(dataset: str) -> float:
    return float(round(get_info(dataset).eps_range[1] / 60, 5))


def ensemble_request(metas: Sequence[dict], dataset: str, total: int) -> dict | None:
    """The Ensemble attacks page's default sweep as ``submit_ensemble_sweep`` keywords."""
    names = picker_names(metas)
    members = paper_picks(names, ENSEMBLE_INPUTS)
    if len(members) < 2:
        return None
    low, high = get_info(dataset).eps_range
    return dict(
        members=members,
        epsilons=ensemble_eps(dataset, float(low), float(high), ENSEMBLE_POINTS),
        steps=ENSEMBLE_STEPS,
        limit=min(ENSEMBLE_IMAGES, total),
    )


def curve_fit_text(dataset: str) -> str:
    """The TM curve page's eps box as it opens."""
    return ", ".join(f"{e:.4g}" for e in default_fit_eps(dataset))


def curve_request(metas: Sequence[dict], dataset: str) -> dict | None:
    """The TM curve page's default fit as ``submit_tm_fit`` keywords."""
    picks = paper_picks(picker_names(metas), CURVE_INPUTS)
    if len(picks) < 2:
        return None
    fit = curve_fit_request(dataset, curve_fit_text(dataset), CURVE_POINTS, CURVE_STEPS, CURVE_IMAGES)
    return dict(source=picks[0], target=picks[1], **fit)


def parse_eps(text: str) -> list[float]:
    """Comma- or space-separated eps values (the TM curve page's box); anything else is a TrendError."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise TrendError(f"The box of eps to fit is empty; give at least {MIN_POINTS}, e.g. 0.05, 0.1, 0.2, 0.3.")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise TrendError(
            f"The eps to fit must be numbers separated by commas, e.g. 0.05, 0.1, 0.2, 0.3; got {text!r}."
        ) from None


def curve_fit_request(dataset: str, fit_text: str, points: int, steps: int, limit: int) -> dict:
    """The fit's eps (parsed from the page's box) and the denser measured sweep (``points`` eps over the
    dataset's range, stretched to the largest fit eps), with PGD steps and images, for ``submit_tm_fit``."""
    fit_eps = parse_eps(fit_text)
    return dict(fit_eps=fit_eps, eval_eps=measured_eps(dataset, fit_eps, points), steps=steps, limit=limit)


def boundary_span(dataset: str) -> float:
    """Twice the L2 size of an L-inf ball of the dataset's default eps."""
    info = get_info(dataset)
    return 2 * info.default_eps * math.sqrt(math.prod(info.input_shape))


def boundary_request(metas: Sequence[dict], dataset: str) -> dict | None:
    """The Decision boundary page's default class maps as ``submit_boundary`` keywords."""
    models = paper_picks(picker_names(metas), BOUNDARY_INPUTS)
    if not models:
        return None
    return dict(models=models, index=0, span=round(boundary_span(dataset), 2), resolution=BOUNDARY_RESOLUTION)


def audit_picks(metas: Sequence[dict]) -> list[str]:
    """The Robustness audit's default models: the paper's FP, Q1 and Q2, fully trained ones first."""
    names = picker_names(metas)
    trained, _ = fully_trained(names, metas)
    return paper_picks([*trained, *[n for n in names if n not in trained]], AUDIT_INPUTS)


def audit_eps_range(dataset: str) -> tuple[float, float]:
    """Where the audit page's eps range starts: half the dataset's default eps to the default."""
    eps = float(get_info(dataset).default_eps)
    return eps / 2, eps


def audit_eps(low: float, high: float, points: int, default_eps: float) -> list[float]:
    """The audit page's eps values: ``points`` evenly from ``low`` to ``high`` (zero dropped)."""
    if points == 1 or high <= low:
        epsilons = [high]
    else:
        step = (high - low) / (points - 1)
        epsilons = [round(low + i * step, 5) for i in range(int(points))]
    return [e for e in epsilons if e > 0] or [float(default_eps)]


def audit_request(metas: Sequence[dict], dataset: str, total: int) -> dict | None:
    """The Robustness audit page's default audit as ``submit_audit`` keywords."""
    names = picker_names(metas)
    picks = audit_picks(metas)
    if not picks:
        return None
    ensemble = len(names) >= AUDIT_MEMBERS
    return dict(
        names=picks[:AUDIT_MEMBERS] if ensemble else picks[:1],
        ensemble=ensemble,
        epsilons=audit_eps(*audit_eps_range(dataset), AUDIT_POINTS, get_info(dataset).default_eps),
        level=AUDIT_LEVEL,
        limit=min(AUDIT_IMAGES, total),
    )


def pool_picks(metas: Sequence[dict]) -> list[str]:
    """The TREND builder's default candidate pool: fully trained models of the pool's input quantizations."""
    trained, _ = fully_trained(picker_names(metas), metas)
    return paper_picks(trained, POOL_INPUTS)


def pool_request(metas: Sequence[dict], dataset: str) -> dict | None:
    """The TREND builder's default transfer run (PGD over its candidate pool) as ``submit_transfer`` keywords."""
    pool = pool_picks(metas)
    if len(pool) < 2:
        return None
    eps = float(attack_settings("pgd", dataset).eps.default)  # type: ignore[arg-type]  # (a number)
    return dict(sources=pool, targets=pool, attack="pgd", params={"eps": eps, "steps": POOL_STEPS}, limit=POOL_IMAGES)


def builder_size(pool: Sequence[str]) -> int:
    """The ensemble size the builder starts at."""
    return min(BUILDER_SIZE, len(pool)) if len(pool) > 2 else 2


def builder_growth_size(pool: Sequence[str]) -> int:
    """The largest ensemble of the builder's growth curve as it opens."""
    return min(BUILDER_GROWTH_SIZE, len(pool)) if len(pool) > 2 else 2


def builder_attack(dataset: str) -> dict:
    """The builder's A-GD settings as they open."""
    return {"eps": float(get_info(dataset).default_eps), "steps": BUILDER_STEPS, "limit": BUILDER_IMAGES}


def builder_run(result, metas: Sequence[dict]) -> tuple:
    """A finished transfer run as the TREND builder reads it: (TM matrix in the zoo's labels, label -> canonical
    name, the labels kept by default (fully trained models), label -> why each other one is left out)."""
    tm = result.matrix(averages=False)
    run_labels = [label for label in tm.index if label in tm.columns]
    names = {label: result.specs.get(label) or label for label in run_labels}
    zoo_label = label_map([*picker_names(metas), *names.values()])
    relabel = {label: zoo_label[name] for label, name in names.items()}
    name_of = {relabel[label]: name for label, name in names.items()}
    tm = tm.loc[run_labels, run_labels].rename(index=relabel, columns=relabel)
    kept, left_out = fully_trained(list(name_of.values()), metas)
    return tm, name_of, [zoo_label[n] for n in kept], {zoo_label[n]: why for n, why in left_out.items()}


def pool_accuracies(labels: Sequence[str], name_of: dict, metas: Sequence[dict]) -> dict:
    """Label -> clean test accuracy of each candidate the zoo knows it for."""
    by_name = {m.get("name"): m for m in metas}
    found = {label: by_name.get(name_of[label], {}).get("test_acc") for label in labels}
    return {label: float(acc) for label, acc in found.items() if acc is not None}


def builder_requests(tm, accuracies: dict, name_of: dict, dataset: str) -> dict:
    """The TREND builder's default evaluation, ranking, growth and audit of a finished run (``tm``: its TM matrix
    over the candidate pool in zoo labels; ``name_of``: label -> canonical name), as submit keywords by job kind."""
    pool = list(tm.index)
    candidates = select_ensembles(
        tm, builder_size(pool), require=[], min_acc=None, accuracies=accuracies, top=BUILDER_CANDIDATES
    )
    chosen = [name_of[label] for label in candidates["members"].iloc[0]]
    sets = growing_ensembles(tm, builder_growth_size(pool), growth_start(pool, [], accuracies), [], None, accuracies)
    settings = builder_attack(dataset)
    return {
        "trend-eval": dict(members=chosen, **settings),
        "trend-rank": dict(
            ensembles=[[name_of[label] for label in m] for m in candidates["members"]], purpose="ranking", **settings
        ),
        "trend-growth": dict(ensembles=[[name_of[label] for label in s] for s in sets], **settings),
        "trend-audit": dict(members=chosen, eps=settings["eps"], limit=settings["limit"]),
    }
