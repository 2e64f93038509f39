"""Every page action as a background job: training, transfer runs, decision-boundary slices, ensemble-attack
sweeps, TREND evaluations and growth curves, TM(eps) fits, robustness audits — one ``submit_*`` each (``jobs.py`` is the generic
job manager they run on).

Each submit checks its input first (one TrendError sentence, before anything runs), keys the job by content
(store folder, the models' identities, every setting), records the equivalent `trend ...` command in
``job.meta["command"]`` and returns the Job; the result is plain data (dicts of DataFrames, tensors, numbers)
so the results store keeps it and a later session gets it back at once.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence, Sized, cast

import numpy as np
import pandas as pd
import torch

from trend_core.attacks.base import check_eps, check_int
from trend_core.attacks.ensemble_pgd import RULE_NAMES, EnsemblePGD, GradientViews, agreement_trace, gradient_views
from trend_core.attacks.pgd import step_size_for
from trend_core.attacks.registry import attack_parameters, make_attack
from trend_core.attacks.settings import attack_settings
from trend_core.config.labels import label_map, set_label
from trend_core.config.profiles import check_profile
from trend_core.config.specs import ModelSpec
from trend_core.data.datasets import load_dataset
from trend_core.ensemble.selection import ENSEMBLE_LABEL, select_ensembles
from trend_core.ensemble.verdict import accuracy_interval, compare_with_members, overall_verdict, verdict_sentence
from trend_core.errors import TrendError
from trend_core.experiments.audit import audit_ensemble_and_members, check_level, run_audit
from trend_core.experiments.boundary import decision_boundary
from trend_core.experiments.curve import MIN_POINTS, fit_tm, measure_tm
from trend_core.experiments.ensemble_sweep import robustness_ratios, robustness_sweep
from trend_core.experiments.transfer import run_transfer
from trend_core.experiments.transfer_keys import attack_identity
from trend_core.experiments.transfer_result import TransferResult
from trend_core.models.zoo import Zoo
from trend_core.nn.vote import MajorityVote
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.jobs import MAX_FINISHED_JOBS, Job, JobManager, JobStatus, ResultStore, device_lane, get_manager
from trend_core.runtime.progress import WorkMeter
from trend_core.service import commands
from trend_core.storage.store import AnyStore, Cache, MemoryStore, content_key

AGREEMENT_IMAGES = 32  # images the per-member agreement is averaged over (a fraction of pixels: steady already)
VERSION = "analysis-jobs/v1"
TREND_VERSION = "trend/v2"  # TREND builder jobs: zoo-wide labels and per-image results (with intervals)
RULE_TITLES = {"dag": "D-AG", "empir": "EMPIR", "ugd": "U-GD", "agd": "A-GD"}  # as the paper writes them


def rule_title(rule: str) -> str:
    """The paper's name of an ensemble-attack rule (A-GD for agd)."""
    return RULE_TITLES.get(rule, rule)


def _test_count(dataset: str) -> int:
    return len(cast(Sized, load_dataset(dataset).test))


# ----------------------------------------------------------------------------- shared pieces
def home_of(zoo: Zoo) -> str:
    """The zoo's store folder, resolved: what keys a job to one folder and what pages match jobs against."""
    return str(Path(zoo.root).expanduser().resolve())


def dataset_of(names: Sequence[str]) -> str | None:
    """The dataset of the models a job works on (from the first name), so that pages show a job's result only
    while the sidebar shows its dataset; None when unknown."""
    try:
        return ModelSpec.parse(names[0]).dataset if names else None
    except (TrendError, ValueError, TypeError, AttributeError):
        return None


def check_members(zoo: Zoo, names: Sequence[str], minimum: int = 1, what: str = "model") -> list[str]:
    """Distinct zoo model names, at least ``minimum`` of them, all present in ``zoo``."""
    names = list(dict.fromkeys(str(n) for n in names))
    if len(names) < minimum:
        if minimum == 2 and what == "ensemble member":
            raise TrendError(
                f"An ensemble needs at least two members; {'only one was' if names else 'none was'} chosen."
            )
        count = {1: "one", 2: "two"}.get(minimum, str(minimum))
        raise TrendError(f"Pick at least {count} {what}{'s' if minimum > 1 else ''}.")
    missing = [n for n in names if not zoo.has(n)]
    if missing:
        raise TrendError(f"{missing[0]} is not in the zoo; train it on the Model zoo page first.")
    return names


def check_epsilons(epsilons: Sequence[float]) -> list[float]:
    """Sorted distinct L-inf eps values, each in (0, 1]."""
    values = sorted({float(check_eps(e) or 0.0) for e in epsilons})  # (check_eps(required=True) never gives None)
    if not values:
        raise TrendError("Give at least one eps.")
    return values


def model_identity(zoo: Zoo, names: Sequence[str]) -> list[tuple]:
    """What pins a zoo model's weights for a cache key: name, spec key and when it was saved."""
    return [(n, ModelSpec.parse(n).key, zoo.metadata(n).get("created")) for n in names]


def zoo_labels(zoo: Zoo, names: Sequence[str]) -> dict[str, str]:
    """Canonical name -> the model's label unique across the zoo's models of its dataset: what the dashboard's
    pickers show, so charts, titles and CSVs made from these models say the same ("FP-s0-e20" wherever the
    quick demo's "FP-s0-e4" is in the zoo too)."""
    dataset = dataset_of(names)
    everything = [m["name"] for m in zoo.list(dataset) if m.get("name")] if dataset else []
    mapping = label_map([*everything, *names])
    return {n: mapping[n] for n in names}


def load_members(zoo: Zoo, names: Sequence[str], device: str | torch.device, job: Job | None = None) -> list:
    """The named zoo models on ``device`` (eval mode), each carrying its zoo-wide label (``zoo_labels``),
    reporting progress while loading."""
    labels = zoo_labels(zoo, names)
    models = []
    for i, name in enumerate(names):
        if job is not None:
            job.progress(None, f"loading {labels[name]} ({i + 1}/{len(names)})")
        models.append(set_label(zoo.load(name, device), labels[name]))
    return models


def test_images(dataset: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` test images and labels of ``dataset`` (the evaluation subset every page uses)."""
    return load_dataset(dataset).tensors("test", limit)


def _submit(
    zoo: Zoo,
    key_parts: Sequence[Any],
    run: Callable[[Job], Any],
    *,
    title: str,
    kind: str,
    device,
    store,
    meta: dict,
    manager: JobManager | None,
    models: Sequence[str],
) -> Job:
    """Submit an analysis job over ``models`` (their dataset goes into the job's meta) keyed by content; inside
    ``existing_job`` only look the job up."""
    home = home_of(zoo)
    key = content_key(VERSION, kind, home, *key_parts)
    meta = {**meta, "home": home, "dataset": dataset_of(models)}
    if _LOOKUP_ONLY.get():
        found = (manager or get_manager()).get(key, store=store)
        if found is None:
            raise _NotStarted(key)
        if found.from_store and not found.meta:  # rebuilt from the store: say what it was
            found.title, found.kind, found.meta = title, kind, dict(meta)
        return found
    return (manager or get_manager()).submit(
        key,
        run,
        title=title,
        kind=kind,
        device=device_lane(device),
        store=store,
        log_dir=Path(zoo.root) / "logs",
        meta=meta,
    )


_LOOKUP_ONLY = contextvars.ContextVar("trend_lookup_only", default=False)


class _NotStarted(Exception):
    """Raised by ``_submit`` inside ``existing_job`` when no job has that key."""


def existing_job(submit: Callable[..., Job], *args: Any, **kwargs: Any) -> Job | None:
    """The job ``submit(*args, **kwargs)`` would give (running, finished in this process, or done in the
    results store) without starting anything; None when there is none. A page shows results through this, so
    what it shows always belongs to the settings on screen. Bad input raises the submit's TrendError."""
    token = _LOOKUP_ONLY.set(True)
    try:
        return submit(*args, **kwargs)
    except _NotStarted:
        return None
    finally:
        _LOOKUP_ONLY.reset(token)


def _check_limit(limit: int | None) -> int | None:
    return None if limit is None else check_int("The image limit", limit)


# ----------------------------------------------------------------------------- decision boundary
def submit_boundary(
    zoo: Zoo,
    store: AnyStore,
    models: Sequence[str],
    index: int,
    span: float | None = None,
    resolution: int = 41,
    seed: int = 0,
    device: str = "auto",
    manager: JobManager | None = None,
) -> Job:
    """Class maps of one or two models on a grid around test image ``index`` (x = the first model's gradient).

    Result: x_offsets, y_offsets (lists), names, classes (name -> (R, R) int tensor), distances (DataFrame:
    model, clean_pred, +x, -x, +y, -y), label, reference (the model giving the x direction), index.
    """

    names = check_members(zoo, models, 1)
    if len(names) > 2:
        raise TrendError(f"Pick one or two models for the decision boundary, not {len(names)}.")
    dataset = ModelSpec.parse(names[0]).dataset
    total = len(load_dataset(dataset).test)  # type: ignore[arg-type]  # (a torch Dataset with __len__)
    index = check_int("The image index", index, 0)
    if index >= total:
        raise TrendError(f"The {dataset} test split has {total} images; pick an index below {total}.")
    dev = resolve_device(device)

    def run(job: Job) -> dict:
        members = load_members(zoo, names, dev, job)
        x, y = test_images(dataset, index + 1)
        job.progress(0.5, f"classifying a {resolution} x {resolution} grid")
        sl = decision_boundary(members, x[index], int(y[index]), span=span, resolution=resolution, seed=seed)
        distances = sl.distance_frame().reset_index()
        return {
            "x_offsets": [float(v) for v in sl.x_offsets],
            "y_offsets": [float(v) for v in sl.y_offsets],
            "names": sl.names,
            "classes": {n: torch.from_numpy(sl.classes[n].astype("int64")) for n in sl.names},
            "distances": distances,
            "label": int(sl.label),
            "reference": sl.reference,
            "index": index,
        }

    return _submit(
        zoo,
        [model_identity(zoo, names), index, span, resolution, seed],
        run,
        title=f"Decision boundary of image {index}",
        kind="boundary",
        device=dev,
        store=store,
        meta={
            "models": names,
            "index": index,
            "command": commands.boundary_command(names, index, span, resolution, seed, zoo.root, device),
        },
        manager=manager,
        models=names,
    )


# ----------------------------------------------------------------------------- ensemble attacks
def submit_ensemble_sweep(
    zoo: Zoo,
    store: AnyStore,
    members: Sequence[str],
    epsilons: Sequence[float],
    steps: int = 20,
    limit: int | None = 100,
    agreement_images: int = AGREEMENT_IMAGES,
    device: str = "auto",
    manager: JobManager | None = None,
    profile: str = "paper",
) -> Job:
    """D-AG, EMPIR, U-GD and A-GD against the majority vote of ``members`` at every eps.

    Result: ``sweep`` (robustness_sweep rows: rule, eps, model, clean_accuracy, accuracy, success_rate,
    acc_on_ensemble_adv) and ``agreement`` (rule, eps, member, agreement: the fraction of pixels where the
    rule's step direction had the member's gradient sign, averaged over steps and the first images).
    """

    names = check_members(zoo, members, 2, "ensemble member")
    dataset = ModelSpec.parse(names[0]).dataset
    eps_list = check_epsilons(epsilons)
    steps = check_int("Attack steps", steps)
    limit = _check_limit(limit)
    agreement_images = check_int("Agreement images", agreement_images)
    step_size = step_size_for(eps_list[-1], steps)
    dev = resolve_device(device)
    profile = check_profile(profile)

    def run(job: Job) -> dict:
        ensemble = MajorityVote(load_members(zoo, names, dev, job), profile=profile)
        x, y = test_images(dataset, min(agreement_images, limit or agreement_images))
        # one unit of work per (rule, eps): the attack on the evaluation images, then the agreement trace on a
        # few of them; both run `steps` iterations, so each weighs its number of images
        n_eval = min(limit, _test_count(dataset)) if limit else _test_count(dataset)
        work = WorkMeter(job.progress, len(RULE_NAMES) * len(eps_list) * (n_eval + len(x)))
        sweeps, frames = [], []
        for rule in RULE_NAMES:
            for eps in eps_list:
                work.start(f"{rule_title(rule)} at eps {eps:g}: attacking the ensemble")
                sweeps.append(
                    robustness_sweep(
                        ensemble,
                        [eps],
                        rules=[rule],
                        limit=limit,
                        steps=steps,
                        step_size=step_size,
                        members_alone=False,
                        cache=store,
                        device=dev,
                        profile=profile,
                    )
                )
                work.done(n_eval, f"{rule_title(rule)} at eps {eps:g}: gradient agreement")
                trace = agreement_trace(
                    EnsemblePGD(rule, eps, steps=steps, step_size=step_size, profile=profile),
                    ensemble,
                    x.to(dev),
                    y.to(dev),
                )
                mean = trace.groupby("member", sort=False, as_index=False)["agreement"].mean()
                frames.append(mean.assign(rule=rule, eps=eps))
                work.done(len(x))
        sweep = pd.concat(sweeps, ignore_index=True)
        agreement = pd.concat(frames, ignore_index=True)[["rule", "eps", "member", "agreement"]]
        return {"sweep": sweep, "agreement": agreement}

    return _submit(
        zoo,
        [model_identity(zoo, names), eps_list, steps, limit, agreement_images, profile],
        run,
        title=f"Ensemble attacks on {len(names)} members ({len(eps_list)} eps)",
        kind="ensemble-sweep",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={
            "members": names,
            "command": commands.ensemble_attack_command(
                names, eps_list, ["all"], steps, step_size, limit, home=zoo.root, device=device, profile=profile
            ),
        },
    )


def gradient_views_of(zoo: Zoo, members: Sequence[str], index: int, device: str = "auto") -> GradientViews:
    """``gradient_views`` of the majority vote of ``members`` at test image ``index`` (one image: no job needed)."""

    names = check_members(zoo, members, 2, "ensemble member")
    index = check_int("The image index", index, 0)
    x, y = test_images(ModelSpec.parse(names[0]).dataset, index + 1)
    if index >= len(x):
        raise TrendError(f"The test split has {len(x)} images; pick an index below {len(x)}.")
    ensemble = MajorityVote(load_members(zoo, names, resolve_device(device)))
    return gradient_views(ensemble, x[index], int(y[index]))


# ----------------------------------------------------------------------------- TREND ensembles
def member_verdict(per_image: pd.DataFrame, setting: str) -> dict:
    """The vote (column ``ensemble``) against each member (the other columns) on the same images: ``comparison``
    (one row per member: accuracies and the paired difference with 95% bounds, verdict), ``verdict`` (held:
    more robust than every member; did not hold: a member beats it; inconclusive) and ``sentence``."""
    comparisons = compare_with_members({str(c): per_image[c].to_numpy(float) for c in per_image.columns})
    return {
        "comparison": pd.DataFrame([c.as_row() for c in comparisons]),
        "verdict": overall_verdict(comparisons),
        "sentence": verdict_sentence(comparisons, setting),
    }


def submit_trend_evaluation(
    zoo: Zoo,
    store: AnyStore,
    members: Sequence[str],
    eps: float,
    steps: int = 20,
    limit: int | None = 100,
    device: str = "auto",
    manager: JobManager | None = None,
    profile: str = "paper",
) -> Job:
    """A-GD at ``eps`` against the ensemble and against each member alone ("x times more robust").

    Result: ``sweep`` (robustness_sweep rows for rule agd), ``ratios`` (robustness_ratios), ``per_image`` (one
    column per model, the ensemble first: each image's (expected) correctness under its attack) and
    ``member_verdict``'s comparison, verdict and sentence (is the vote more robust than every member?).
    """

    names = check_members(zoo, members, 2, "ensemble member")
    (eps,) = check_epsilons([eps])
    steps = check_int("Attack steps", steps)
    limit = _check_limit(limit)
    dev = resolve_device(device)
    profile = check_profile(profile)
    labels = zoo_labels(zoo, names)

    def run(job: Job) -> dict:
        ensemble = MajorityVote(load_members(zoo, names, dev, job), profile=profile)
        outcomes: dict = {}
        sweep = robustness_sweep(
            ensemble,
            [eps],
            rules=["agd"],
            limit=limit,
            steps=steps,
            step_size=step_size_for(eps, steps),
            cache=store,
            device=dev,
            progress=job.progress,  # weighed by gradients: the ensemble's N, each member's 1
            profile=profile,
            outcomes=outcomes,
        )
        per_image = pd.DataFrame({m: outcomes[("agd", eps, m)] for m in [ENSEMBLE_LABEL, *ensemble.names]})
        setting = f"Under A-GD at eps {eps:g} ({steps} steps)"
        return {
            "sweep": sweep,
            "ratios": robustness_ratios(sweep),
            "per_image": per_image,
            **member_verdict(per_image, setting),
        }

    return _submit(
        zoo,
        [TREND_VERSION, model_identity(zoo, names), [labels[n] for n in names], eps, steps, limit, profile],
        run,
        title=f"A-GD at eps {eps:g} on {' + '.join(labels[n] for n in names)}",
        kind="trend-eval",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={
            "members": names,
            "command": commands.ensemble_attack_command(
                names,
                [eps],
                ["agd"],
                steps,
                step_size_for(eps, steps),
                limit,
                members_alone=True,
                home=zoo.root,
                device=device,
                profile=profile,
            ),
        },
    )


SETS_COLUMNS = ["size", "members", "clean_accuracy", "accuracy", "ci_low", "ci_high", "eps"]


def submit_trend_growth(
    zoo: Zoo,
    store: AnyStore,
    ensembles: Sequence[Sequence[str]],
    eps: float,
    steps: int = 20,
    limit: int | None = 100,
    device: str = "auto",
    manager: JobManager | None = None,
    profile: str = "paper",
    purpose: str = "growth",
) -> Job:
    """Clean accuracy and accuracy under A-GD at ``eps`` of the vote of each ensemble in ``ensembles``.

    ``purpose`` "growth": robustness as the ensemble grows (the paper's Fig. 9; e.g. the best TREND set of every
    size); "ranking" (beyond the paper): the measured robustness of each candidate, so a defender sees TREND's
    low-TM ranking beside a ranking by what the vote withstands. Result: a DataFrame size, members (labels
    joined by " + "), clean_accuracy, accuracy, ci_low / ci_high (its 95% bootstrap interval over the images),
    eps; one row per ensemble in the order given.
    """
    if purpose not in ("growth", "ranking"):
        raise TrendError(f"purpose is 'growth' or 'ranking', not {purpose!r}.")
    kind = "trend-growth" if purpose == "growth" else "trend-rank"
    sets = [check_members(zoo, members, 1) for members in ensembles]
    if not sets:
        raise TrendError("Give at least one ensemble to evaluate.")
    (eps,) = check_epsilons([eps])
    steps = check_int("Attack steps", steps)
    limit = _check_limit(limit)
    dev = resolve_device(device)
    names = list(dict.fromkeys(n for members in sets for n in members))
    profile = check_profile(profile)
    labels = zoo_labels(zoo, names)

    def run(job: Job) -> pd.DataFrame:
        loaded = dict(zip(names, load_members(zoo, names, dev, job)))
        rows = []
        work = WorkMeter(job.progress, sum(len(members) for members in sets))  # an attack costs one gradient a member
        for i, members in enumerate(sets):
            shown = " + ".join(labels[n] for n in members)
            work.start(f"A-GD on {shown} ({i + 1}/{len(sets)} ensembles)")
            ensemble = MajorityVote([loaded[n] for n in members], names=[labels[n] for n in members], profile=profile)
            outcomes: dict = {}
            sweep = robustness_sweep(
                ensemble,
                [eps],
                rules=["agd"],
                limit=limit,
                steps=steps,
                step_size=step_size_for(eps, steps),
                members_alone=False,
                cache=store,
                device=dev,
                profile=profile,
                outcomes=outcomes,
            )
            row = sweep[sweep["model"] == ENSEMBLE_LABEL].iloc[0]
            robust = accuracy_interval(outcomes[("agd", eps, ENSEMBLE_LABEL)])
            rows.append(
                {
                    "size": len(members),
                    "members": shown,
                    "clean_accuracy": float(row["clean_accuracy"]),
                    "accuracy": float(row["accuracy"]),
                    "ci_low": robust.low,
                    "ci_high": robust.high,
                    "eps": eps,
                }
            )
            work.done(len(members))
        return pd.DataFrame(rows, columns=SETS_COLUMNS)

    what = "growing ensembles" if purpose == "growth" else "candidate ensembles"
    return _submit(
        zoo,
        [TREND_VERSION, [model_identity(zoo, s) for s in sets], [labels[n] for n in names], eps, steps, limit, profile],
        run,
        title=f"A-GD at eps {eps:g} on {len(sets)} {what}",
        kind=kind,
        device=dev,
        store=store,
        manager=manager,
        meta={
            "ensembles": [list(s) for s in sets],
            "command": "\n".join(
                commands.ensemble_attack_command(
                    s,
                    [eps],
                    ["agd"],
                    steps,
                    step_size_for(eps, steps),
                    limit,
                    home=zoo.root,
                    device=device,
                    profile=profile,
                )
                for s in sets
            ),
        },
        models=[name for s in sets for name in s],
    )


def growing_ensembles(
    tm_matrix: pd.DataFrame,
    max_size: int,
    start: str,
    require: Sequence[str] = (),
    min_acc: float | None = None,
    accuracies: dict[str, float] | None = None,
) -> list[list[str]]:
    """``[start]``, then the best TREND set of every size 2..``max_size`` that contains ``start`` and ``require``
    (labels as in ``tm_matrix``)."""
    required = list(dict.fromkeys([start, *require]))
    sets = [[start]]
    for k in range(max(2, len(required)), int(max_size) + 1):
        best = select_ensembles(tm_matrix, k, require=required, min_acc=min_acc, accuracies=accuracies, top=1)
        sets.append(list(best["members"].iloc[0]))
    return sets


# ----------------------------------------------------------------------------- TM(eps)
def submit_tm_fit(
    zoo: Zoo,
    store: AnyStore,
    source: str,
    target: str,
    fit_eps: Sequence[float],
    eval_eps: Sequence[float] = (),
    steps: int = 20,
    limit: int | None = 200,
    device: str = "auto",
    manager: JobManager | None = None,
    profile: str = "paper",
) -> Job:
    """Fit TM(eps) of ``source`` -> ``target`` under PGD from ``fit_eps`` and compare with ``eval_eps``.

    Result: source, target, attack, params (a_st, b_st, a_ss, b_ss), fit_eps, measured (eps, f_st, f_ss, tm,
    n_common, used_in_fit), curve (the fit on a dense eps grid), rmse (per quantity: DataFrame), warnings.
    """

    names = check_members(zoo, [source, target], 1)
    if len(names) < 2:
        raise TrendError("Source and target are the same model; TM(eps) is 1 by definition. Pick two models.")
    fit_list = check_epsilons(fit_eps)
    if len(fit_list) < MIN_POINTS:
        raise TrendError(f"The TM(eps) fit needs at least {MIN_POINTS} distinct eps values, got {len(fit_list)}.")
    eval_list = check_epsilons(eval_eps) if len(eval_eps) else []
    steps = check_int("Attack steps", steps)
    limit = _check_limit(limit)
    top = max([*fit_list, *eval_list])
    attack = make_attack("pgd", eps=top, steps=steps, step_size=step_size_for(top, steps))
    dev = resolve_device(device)
    profile = check_profile(profile)

    def run(job: Job) -> dict:
        src, tgt = load_members(zoo, names, dev, job)
        cache = MemoryStore() if store is False or store is None else store  # the fit reads what the loop measured
        # stage 1, one eps at a time (each a PGD run of equal cost) so the bar moves per point; stage 2, the fit,
        # finds every point in the cache and only solves the two small least-squares problems
        points = sorted({*fit_list, *eval_list})
        work = WorkMeter(job.progress, len(points) + 0.05)
        for i, eps in enumerate(points):
            work.start(f"measuring TM at eps {eps:g} ({i + 1}/{len(points)} points)")
            measure_tm(src, tgt, [eps], attack, limit=limit, cache=cache, device=dev, profile=profile)
            work.done(1)
        work.start(f"fitting f_st and f_ss to {len(fit_list)} points")
        result = fit_tm(
            src, tgt, fit_list, eval_list, attack=attack, limit=limit, cache=cache, device=dev, profile=profile
        )
        measured = result.measured.copy()
        measured["tm_fit"] = result.curve.tm(measured["eps"].to_numpy(float))
        errors = pd.DataFrame(
            [
                {
                    "quantity": "TM (every measured eps)",
                    "points": int(measured["tm"].notna().sum()),
                    "rmse": result.rmse,
                    "max_abs_error": result.max_abs_error,
                },
                *(
                    {
                        "quantity": f"{col} (fit points, images)",
                        "points": len(fit_list),
                        "rmse": fit.rmse,
                        "max_abs_error": float(
                            np.abs(
                                fit(measured.loc[measured["used_in_fit"], "eps"])
                                - measured.loc[measured["used_in_fit"], col]
                            ).max()
                        ),
                    }
                    for col, fit in (("f_st", result.curve.st), ("f_ss", result.curve.ss))
                ),
            ]
        )
        return {
            "source": result.source,
            "target": result.target,
            "attack": result.attack,
            "params": result.curve.params(),
            "fit_eps": list(result.curve.fit_eps),
            "measured": measured,
            "curve": result.predictions(points=80),
            "rmse": errors,
            "warnings": list(result.warnings),
        }

    return _submit(
        zoo,
        [model_identity(zoo, names), fit_list, eval_list, steps, limit, profile],
        run,
        title=f"TM(eps) fit over {len(set(fit_list) | set(eval_list))} eps",
        kind="tm-fit",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={
            "source": names[0],
            "target": names[1],
            "command": commands.fit_tm_command(
                names[0],
                names[1],
                fit_list,
                eval_list,
                steps,
                step_size_for(top, steps),
                limit,
                home=zoo.root,
                device=device,
                profile=profile,
            ),
        },
    )


# ----------------------------------------------------------------------------- robustness audit
def submit_audit(
    zoo,
    store,
    names: Sequence[str],
    epsilons: Sequence[float],
    ensemble: bool,
    level: str = "quick",
    limit: int | None = 100,
    device: str = "auto",
    manager: JobManager | None = None,
) -> Job:
    """Run ``run_audit`` on one model or the majority vote of ``names`` as a job (see trend_core.experiments.audit)."""
    names = check_members(zoo, names, 2 if ensemble else 1, "ensemble member" if ensemble else "model")
    if not ensemble and len(names) != 1:
        raise TrendError("Pick one model to audit, or audit the majority vote of several.")
    eps_list = check_epsilons(epsilons)
    check_level(level)
    limit = _check_limit(limit)
    dev = resolve_device(device)

    def run(job: Job) -> dict:
        report = run_audit(
            zoo,
            names,
            ensemble=ensemble,
            epsilons=eps_list,
            level=level,
            limit=limit,
            device=str(dev),
            cache=store,
            progress=job.progress,
        )
        return {
            "robust": report.robust,
            "worst_case": report.worst_case,
            "flags": [{"name": f.name, "fired": f.fired, "sentence": f.sentence} for f in report.flags],
            "meta": {
                "models": report.models,
                "ensemble": report.ensemble,
                "level": report.level,
                "n_images": report.n_images,
                "clean_accuracy": report.clean_accuracy,
                "notes": list(report.notes),
            },
        }

    what = f"the vote of {len(names)} models" if ensemble else "one model"
    return _submit(
        zoo,
        [model_identity(zoo, names), eps_list, bool(ensemble), level, limit],
        run,
        title=f"Audit ({level}) of {what} at eps {', '.join(f'{e:g}' for e in eps_list)}",
        kind="audit",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={
            "models": names,
            "ensemble": bool(ensemble),
            "command": commands.audit_command(
                names, eps_list, bool(ensemble), level, limit, home=zoo.root, device=device
            ),
        },
    )


def submit_trend_audit(
    zoo,
    store,
    members: Sequence[str],
    eps: float,
    limit: int | None = 100,
    device: str = "auto",
    manager: JobManager | None = None,
) -> Job:
    """The quick audit of a TREND ensemble and of each member alone at ``eps`` (the TREND builder's check).

    Result: ``summary`` (model, eps, clean_accuracy, agd_accuracy, worst_case_accuracy, flags), ``flags``
    (list of dicts: model, name, fired, sentence), ``per_image`` (each image's worst case: the vote, then each
    member) and ``member_verdict``'s comparison, verdict and sentence under the worst case.
    """
    names = check_members(zoo, members, 2, "ensemble member")
    (eps,) = check_epsilons([eps])
    limit = _check_limit(limit)
    dev = resolve_device(device)
    labels = [zoo_labels(zoo, names)[n] for n in names]

    def run(job: Job) -> dict:
        reports: dict = {}
        summary, flags = audit_ensemble_and_members(
            zoo,
            names,
            eps,
            limit=limit,
            device=str(dev),
            cache=store,
            progress=job.progress,
            labels=labels,
            reports=reports,
        )
        vote = " + ".join(labels)
        per_image = pd.DataFrame(
            {
                ENSEMBLE_LABEL if label == vote else label: report.worst_per_image[eps]
                for label, report in reports.items()
            }
        )
        setting = f"Under the audit's worst case at eps {eps:g} (an image counts only if it survives every attack)"
        return {
            "summary": summary,
            "flags": [
                {"model": model, "name": f.name, "fired": f.fired, "sentence": f.sentence}
                for model, fs in flags.items()
                for f in fs
            ],
            "per_image": per_image,
            **member_verdict(per_image, setting),
        }

    return _submit(
        zoo,
        [TREND_VERSION, model_identity(zoo, names), labels, eps, limit],
        run,
        title=f"Audit of {' + '.join(labels)} and its members at eps {eps:g}",
        kind="trend-audit",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={
            "members": names,
            "command": "\n".join(
                commands.audit_command(ms, [eps], len(ms) > 1, "quick", limit, home=zoo.root, device=device)
                for ms in [names, *([n] for n in names)]
            ),
        },
    )


# ----------------------------------------------------------------------------- training
def training_message(step) -> str:
    """What a training job's bar says: the count of models finished (it only grows, although models training side
    by side report in turn), then the latest model's news ("FP-s0: epoch 3/20, validation accuracy 91.0%")."""
    count = f"{step.models_done}/{step.models_total} models trained"
    report = step.report
    label = step.spec.short_name
    if report is None or step.result is not None:
        accuracy = "" if step.result is None else f" (test accuracy {step.result.test_acc:.1%})"
        return f"{count}; {label} done{accuracy}"
    return f"{count}; {label}: epoch {report.epoch}/{report.epochs}, validation accuracy {report.val_acc:.1%}"


class _ZooHasAll:
    """A read-only 'store' for training jobs: the result is there once the zoo holds every spec."""

    def __init__(self, zoo, specs):
        self.zoo, self.specs = zoo, list(specs)

    def get(self, key: str, default: Any = None) -> Any:
        if all(self.zoo.has(spec) for spec in self.specs):
            return [self.zoo.metadata(spec) for spec in self.specs]
        return default

    def set(self, key: str, value: Any) -> None:  # the zoo already holds the checkpoints
        return None


def training_key(zoo: Zoo, specs: Sequence[ModelSpec]) -> str:
    """Content key of 'train these specs into this zoo' (order-free)."""
    payload = "|".join([home_of(zoo)] + sorted(spec.key for spec in specs))
    return "train-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def submit_training(
    zoo: Zoo, specs: Sequence[ModelSpec], device: str = "auto", manager: JobManager | None = None
) -> Job:
    """Train the missing ``specs`` into ``zoo`` as one heavy job on the resolved device (progress per epoch).

    The job's result is the list of the models' metadata; it is done at once when the zoo has them all.
    """
    specs = list(dict.fromkeys(specs))
    if not specs:
        raise TrendError("No models were chosen to train; pick at least one.")
    dev = resolve_device(device)
    n = len(specs)

    def run(job: Job) -> list[dict]:
        # progress counts epochs, so a 4-epoch model moves the bar a fifth of a 20-epoch one; small-image models
        # train side by side (one per core), so reports from several models interleave
        job.progress(0.0, "first epochs under way")
        zoo.train_many(
            specs,
            device=str(dev),
            progress=lambda step: job.progress(step.fraction, training_message(step)),
            cancel=job.cancel_requested,
        )
        return [zoo.metadata(spec) for spec in specs]

    title = f"Training {n} model{'s' if n > 1 else ''}"
    return (manager or get_manager()).submit(
        training_key(zoo, specs),
        run,
        title=title,
        kind="train",
        device=device_lane(dev),
        store=_ZooHasAll(zoo, specs),
        log_dir=Path(zoo.root) / "logs",
        meta={
            "home": home_of(zoo),
            "dataset": dataset_of([spec.name for spec in specs]),
            "command": commands.train_command([spec.name for spec in specs], zoo.root, device),
        },
    )


# ----------------------------------------------------------------------------- transfer runs
TRANSFER_JOB_VERSION = "transfer-job/v1"


class _CodecStore:
    """A store view that writes ``encode(result)`` and reads back ``decode(value)`` (for results that hold
    closures or tensors the store should not keep, like a TransferResult's per-image details)."""

    def __init__(self, store: ResultStore, encode: Callable[[Any], Any], decode: Callable[[Any], Any]):
        self.store, self.encode, self.decode = store, encode, decode

    def get(self, key: str, default: Any = None) -> Any:
        value = self.store.get(key)
        return default if value is None else self.decode(value)

    def set(self, key: str, value: Any) -> None:
        self.store.set(key, self.encode(value))


def transfer_summary(result: TransferResult) -> dict:
    """What the store keeps of a TransferResult: everything but the per-image details."""
    return {
        "pairs": result.pairs,
        "sources": list(result.sources),
        "targets": list(result.targets),
        "attack": result.attack,
        "eps": result.eps,
        "split": result.split,
        "n_images": int(result.n_images),
        "specs": dict(result.specs),
        "warnings": list(result.warnings),
    }


def transfer_from_summary(summary: dict) -> TransferResult:
    """A TransferResult rebuilt from ``transfer_summary`` (no per-image details: examples need a rerun)."""
    return TransferResult(
        summary["pairs"],
        list(summary["sources"]),
        list(summary["targets"]),
        summary["attack"],
        summary["eps"],
        summary["split"],
        summary["n_images"],
        dict(summary["specs"]),
        list(summary["warnings"]),
    )


TRANSFER_INDEX_VERSION = "transfer-index/v1"
_INDEX_LOCK = threading.Lock()


def _transfer_index_key(zoo: Zoo) -> str:
    return content_key(TRANSFER_INDEX_VERSION, home_of(zoo))


def _record_transfer_run(zoo: Zoo, store: AnyStore, key: str, request: dict) -> None:
    """Note a finished transfer run in the store's index of this folder, so it is listed after a restart."""
    with _INDEX_LOCK:
        entries = [e for e in (store.get(_transfer_index_key(zoo)) or []) if e.get("key") != key]
        entries.append({"key": key, "request": request, "finished": time.time()})
        store.set(_transfer_index_key(zoo), entries[-MAX_FINISHED_JOBS:])


def stored_transfer_runs(zoo: Zoo, store: AnyStore, manager: JobManager | None = None) -> list[Job]:
    """Finished transfer runs of this store folder, newest first, rebuilt from the store when the server
    process no longer knows them (after a restart); runs whose result has left the store are skipped."""
    manager = manager or get_manager()
    codec = _CodecStore(store, transfer_summary, transfer_from_summary)
    found = []
    for entry in reversed(store.get(_transfer_index_key(zoo)) or []):
        job = manager.get(entry["key"], store=codec)
        if job is not None and job.status is JobStatus.DONE:
            job.meta.setdefault("request", entry.get("request", {}))
            job.meta.setdefault("home", home_of(zoo))
            job.meta.setdefault("dataset", dataset_of(job.meta["request"].get("sources", [])))
            if job.meta["request"] and job.meta["dataset"]:
                request = job.meta["request"]
                job.meta.setdefault(
                    "command",
                    commands.transfer_command(
                        request["sources"],
                        request["targets"],
                        request["attack"],
                        request.get("params") or {},
                        job.meta["dataset"],
                        request.get("limit"),
                        request.get("split", "test"),
                        zoo.root,
                    ),
                )
            found.append(job)
    return found


def submit_transfer(
    zoo: Zoo,
    store: AnyStore,
    sources: list[str],
    targets: list[str],
    attack: str,
    params: dict | None = None,
    limit: int | None = None,
    split: str = "test",
    device: str = "auto",
    live: bool = False,
    manager: JobManager | None = None,
    profile: str = "paper",
) -> Job:
    """A transfer run of zoo models (by canonical name) as a heavy job; the attack is checked first.

    The finished TransferResult is summarized into ``store``, so a new session gets the matrix at once;
    ``live=True`` asks for a result with per-image details (examples), recomputed from the cached attacks.
    ``params`` are completed by ``attack_settings`` (the CLI's defaults; PGD's step size from eps and steps).
    """
    if not sources:
        raise TrendError("Pick at least one source model to attack.")
    if not targets:
        raise TrendError("Pick at least one target model to evaluate.")
    names = list(dict.fromkeys([*sources, *targets]))
    missing = [n for n in names if not zoo.has(n)]
    if missing:
        raise TrendError(f"{missing[0]} is not in the zoo; train it on the Model zoo page first.")
    dataset = ModelSpec.parse(names[0]).dataset
    params = attack_settings(attack, dataset).complete(**(params or {}))
    profile = check_profile(profile)
    extra = {"profile": profile} if profile != "paper" and "profile" in attack_parameters(attack) else {}
    attack_obj = make_attack(attack, **params, **extra)
    dev = resolve_device(device)
    identity = model_identity(zoo, names)
    labels = zoo_labels(zoo, names)  # the run's tables say what the pickers say
    key = content_key(
        TRANSFER_JOB_VERSION,
        home_of(zoo),
        identity,
        [labels[n] for n in names],
        list(sources),
        list(targets),
        attack_identity(attack_obj),
        attack_obj.eps,
        limit,
        split,
        *([] if profile == "paper" else [profile]),
    )

    def run(job: Job):
        models = load_members(zoo, names, dev, job)

        result = run_transfer(
            models,
            attack_obj,
            split=split,
            limit=limit,
            cache=cast(Cache, store),
            progress=job.progress,
            device=dev,
            sources=list(sources),
            targets=list(targets),
            cancel=job.cancel_requested,
            profile=profile,
        )
        if not live:
            _record_transfer_run(zoo, store, key, request)
        return result

    request = dict(
        sources=list(sources),
        targets=list(targets),
        attack=attack,
        params=dict(params),
        limit=limit,
        split=split,
        profile=profile,
    )
    command = commands.transfer_command(
        sources, targets, attack, params, dataset, limit, split, zoo.root, device, profile
    )
    n = len(sources)
    title = f"{attack_obj.name.upper()} transfer run ({n} source{'s' if n > 1 else ''} x {len(targets)} targets)"
    result_store = None if live else _CodecStore(store, transfer_summary, transfer_from_summary)
    return (manager or get_manager()).submit(
        key + (":live" if live else ""),
        run,
        title=title,
        kind="transfer-live" if live else "transfer",
        device=device_lane(dev),
        store=result_store,
        log_dir=Path(zoo.root) / "logs",
        meta={"request": request, "home": home_of(zoo), "dataset": dataset_of(sources), "command": command},
    )


def belongs_to(job: Job, home: str, dataset: str, strict: bool = False) -> bool:
    """Whether ``job`` ran on the store folder ``home`` (resolved) and on ``dataset``. A job that does not say
    (made by an older version) counts as a match unless ``strict``."""
    meta = job.meta
    if strict:
        return meta.get("home") == home and meta.get("dataset", dataset) == dataset
    return meta.get("home", home) == home and meta.get("dataset", dataset) == dataset


def finished_transfer_runs(zoo: Zoo, store: AnyStore, dataset: str, manager: JobManager | None = None) -> list[Job]:
    """Every finished transfer run of this store folder on ``dataset``, newest first: those this process ran (or
    recalled), then those only the store's index still knows (after a server restart)."""
    manager = manager or get_manager()
    home = home_of(zoo)
    live = [
        job
        for job in manager.jobs(kind="transfer")
        if job.status is JobStatus.DONE and belongs_to(job, home, dataset, strict=True)
    ]
    known = {job.key for job in live}
    return live + [
        job
        for job in stored_transfer_runs(zoo, store, manager)
        if job.key not in known and belongs_to(job, home, dataset)
    ]


def zoo_accuracies(zoo: Zoo, result: TransferResult) -> dict[str, float]:
    """Clean test accuracy of each zoo model of a transfer result, by its label (from the zoo's metadata)."""
    found = {}
    for label, name in result.specs.items():
        if name and zoo.has(name):
            acc = zoo.metadata(name).get("test_acc")
            if acc is not None:
                found[label] = float(acc)
    return found
