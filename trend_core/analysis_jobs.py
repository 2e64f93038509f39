"""The dashboard's analysis work as background jobs: decision-boundary slices, ensemble-attack sweeps, TREND
evaluations and growth curves, TM(eps) fits — one ``submit_*`` per page action, in the manner of
``jobs.submit_transfer``.

Each submit checks its input first (one TrendError sentence, before anything runs), keys the job by content
(store folder, the models' identities, every setting), and returns the Job; the result is plain data (dicts of
DataFrames, tensors, numbers) so the results store keeps it and a later session gets it back at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from .errors import TrendError
from .jobs import Job, JobManager, _home, dataset_of, device_lane, get_manager
from .profiles import check_profile
from .progress import WorkMeter

PAPER_STEP_SIZE = 0.01  # PAPER.md section 3: PGD step size
AGREEMENT_IMAGES = 32  # images the per-member agreement is averaged over (a fraction of pixels: steady already)
VERSION = "analysis-jobs/v1"
RULE_TITLES = {"dag": "D-AG", "empir": "EMPIR", "ugd": "U-GD", "agd": "A-GD"}  # as the paper writes them


def rule_title(rule: str) -> str:
    return RULE_TITLES.get(rule, rule)


def _test_count(dataset: str) -> int:
    from .data import load_dataset

    return len(load_dataset(dataset).test)


# ----------------------------------------------------------------------------- shared pieces
def step_size_for(eps_max: float, steps: int) -> float:
    """The paper's step size 0.01, or larger when ``steps`` steps of 0.01 could not reach the largest eps."""
    return max(PAPER_STEP_SIZE, round(1.25 * float(eps_max) / int(steps), 6))


def check_members(zoo, names: Sequence[str], minimum: int = 1, what: str = "model") -> list[str]:
    """Distinct zoo model names, at least ``minimum`` of them, all present in ``zoo``."""
    names = list(dict.fromkeys(str(n) for n in names))
    if len(names) < minimum:
        if minimum == 2 and what == "ensemble member":
            raise TrendError(f"An ensemble needs at least two members; {'only one was' if names else 'none was'} "
                             "chosen.")
        count = {1: "one", 2: "two"}.get(minimum, str(minimum))
        raise TrendError(f"Pick at least {count} {what}{'s' if minimum > 1 else ''}.")
    missing = [n for n in names if not zoo.has(n)]
    if missing:
        raise TrendError(f"{missing[0]} is not in the zoo; train it on the Model zoo page first.")
    return names


def check_epsilons(epsilons: Sequence[float]) -> list[float]:
    """Sorted distinct L-inf eps values, each in (0, 1]."""
    from .attacks.base import check_eps

    values = sorted({check_eps(e) for e in epsilons})
    if not values:
        raise TrendError("Give at least one eps.")
    return values


def model_identity(zoo, names: Sequence[str]) -> list[tuple]:
    """What pins a zoo model's weights for a cache key: name, spec key and when it was saved."""
    from .specs import ModelSpec

    return [(n, ModelSpec.parse(n).key, zoo.metadata(n).get("created")) for n in names]


def load_members(zoo, names: Sequence[str], device, job: Job | None = None) -> list:
    """The named zoo models on ``device`` (eval mode), reporting progress while loading."""
    from .specs import ModelSpec

    models = []
    for i, name in enumerate(names):
        if job is not None:
            job.progress(None, f"loading {ModelSpec.parse(name).short_name} ({i + 1}/{len(names)})")
        models.append(zoo.load(name, device))
    return models


def test_images(dataset: str, limit: int):
    """The first ``limit`` test images and labels of ``dataset`` (the evaluation subset every page uses)."""
    from .data import load_dataset

    return load_dataset(dataset).tensors("test", limit)


def _submit(zoo, key_parts: Sequence[Any], run: Callable[[Job], Any], *, title: str, kind: str, device,
            store, meta: dict, manager: JobManager | None, models: Sequence[str]) -> Job:
    """Submit an analysis job over ``models`` (their dataset goes into the job's meta) keyed by content."""
    from .store import content_key

    home = _home(zoo)
    key = content_key(VERSION, kind, home, *key_parts)
    return (manager or get_manager()).submit(
        key, run, title=title, kind=kind, device=device_lane(device), store=store, log_dir=Path(zoo.root) / "logs",
        meta={**meta, "home": home, "dataset": dataset_of(models)})


def _check_limit(limit: int | None) -> int | None:
    from .attacks.base import check_int

    return None if limit is None else check_int("The image limit", limit)


# ----------------------------------------------------------------------------- decision boundary
def submit_boundary(zoo, store, models: Sequence[str], index: int, span: float | None = None,
                    resolution: int = 41, seed: int = 0, device: str = "auto",
                    manager: JobManager | None = None) -> Job:
    """Class maps of one or two models on a grid around test image ``index`` (x = the first model's gradient).

    Result: x_offsets, y_offsets (lists), names, classes (name -> (R, R) int tensor), distances (DataFrame:
    model, clean_pred, +x, -x, +y, -y), label, reference (the model giving the x direction), index.
    """
    from .attacks.base import check_int
    from .data import load_dataset
    from .devices import resolve_device
    from .specs import ModelSpec

    names = check_members(zoo, models, 1)
    if len(names) > 2:
        raise TrendError(f"Pick one or two models for the decision boundary, not {len(names)}.")
    dataset = ModelSpec.parse(names[0]).dataset
    total = len(load_dataset(dataset).test)
    index = check_int("The image index", index, 0)
    if index >= total:
        raise TrendError(f"The {dataset} test split has {total} images; pick an index below {total}.")
    dev = resolve_device(device)

    def run(job: Job) -> dict:
        import torch

        from .boundary import decision_boundary

        members = load_members(zoo, names, dev, job)
        x, y = test_images(dataset, index + 1)
        job.progress(0.5, f"classifying a {resolution} x {resolution} grid")
        sl = decision_boundary(members, x[index], int(y[index]), span=span, resolution=resolution, seed=seed)
        distances = sl.distance_frame().reset_index()
        return {"x_offsets": [float(v) for v in sl.x_offsets], "y_offsets": [float(v) for v in sl.y_offsets],
                "names": sl.names, "classes": {n: torch.from_numpy(sl.classes[n].astype("int64")) for n in sl.names},
                "distances": distances, "label": int(sl.label), "reference": sl.reference, "index": index}

    return _submit(zoo, [model_identity(zoo, names), index, span, resolution, seed], run,
                   title=f"Decision boundary of image {index}", kind="boundary", device=dev, store=store,
                   meta={"models": names, "index": index}, manager=manager, models=names)


# ----------------------------------------------------------------------------- ensemble attacks
def submit_ensemble_sweep(zoo, store, members: Sequence[str], epsilons: Sequence[float], steps: int = 20,
                          limit: int | None = 100, agreement_images: int = AGREEMENT_IMAGES, device: str = "auto",
                          manager: JobManager | None = None, profile: str = "paper") -> Job:
    """D-AG, EMPIR, U-GD and A-GD against the majority vote of ``members`` at every eps.

    Result: ``sweep`` (robustness_sweep rows: rule, eps, model, clean_accuracy, accuracy, success_rate,
    acc_on_ensemble_adv) and ``agreement`` (rule, eps, member, agreement: the fraction of pixels where the
    rule's step direction had the member's gradient sign, averaged over steps and the first images).
    """
    from .attacks.base import check_int
    from .attacks.ensemble import RULE_NAMES
    from .devices import resolve_device
    from .specs import ModelSpec

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
        from .attacks.ensemble import EnsemblePGD, agreement_trace
        from .ensemble import MajorityVote, robustness_sweep

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
                sweeps.append(robustness_sweep(ensemble, [eps], rules=[rule], limit=limit, steps=steps,
                                               step_size=step_size, members_alone=False, store=store, device=dev,
                                               profile=profile))
                work.done(n_eval, f"{rule_title(rule)} at eps {eps:g}: gradient agreement")
                trace = agreement_trace(EnsemblePGD(rule, eps, steps=steps, step_size=step_size, profile=profile),
                                        ensemble, x.to(dev), y.to(dev))
                mean = trace.groupby("member", sort=False, as_index=False)["agreement"].mean()
                frames.append(mean.assign(rule=rule, eps=eps))
                work.done(len(x))
        sweep = pd.concat(sweeps, ignore_index=True)
        agreement = pd.concat(frames, ignore_index=True)[["rule", "eps", "member", "agreement"]]
        return {"sweep": sweep, "agreement": agreement}

    return _submit(zoo, [model_identity(zoo, names), eps_list, steps, limit, agreement_images, profile], run,
                   title=f"Ensemble attacks on {len(names)} members ({len(eps_list)} eps)", kind="ensemble-sweep",
                   device=dev, store=store, meta={"members": names}, manager=manager, models=names)


def gradient_views_of(zoo, members: Sequence[str], index: int, device: str = "auto"):
    """``gradient_views`` of the majority vote of ``members`` at test image ``index`` (one image: no job needed)."""
    from .attacks.base import check_int
    from .attacks.ensemble import gradient_views
    from .devices import resolve_device
    from .ensemble import MajorityVote
    from .specs import ModelSpec

    names = check_members(zoo, members, 2, "ensemble member")
    index = check_int("The image index", index, 0)
    x, y = test_images(ModelSpec.parse(names[0]).dataset, index + 1)
    if index >= len(x):
        raise TrendError(f"The test split has {len(x)} images; pick an index below {len(x)}.")
    ensemble = MajorityVote(load_members(zoo, names, resolve_device(device)))
    return gradient_views(ensemble, x[index], int(y[index]))


# ----------------------------------------------------------------------------- TREND ensembles
def submit_trend_evaluation(zoo, store, members: Sequence[str], eps: float, steps: int = 20,
                            limit: int | None = 100, device: str = "auto", manager: JobManager | None = None,
                            profile: str = "paper") -> Job:
    """A-GD at ``eps`` against the ensemble and against each member alone ("x times more robust").

    Result: ``sweep`` (robustness_sweep rows for rule agd) and ``ratios`` (robustness_ratios).
    """
    from .attacks.base import check_int
    from .devices import resolve_device

    names = check_members(zoo, members, 2, "ensemble member")
    (eps,) = check_epsilons([eps])
    steps = check_int("Attack steps", steps)
    limit = _check_limit(limit)
    dev = resolve_device(device)
    profile = check_profile(profile)

    def run(job: Job) -> dict:
        from .ensemble import MajorityVote, robustness_ratios, robustness_sweep

        ensemble = MajorityVote(load_members(zoo, names, dev, job), profile=profile)
        # the attack on the ensemble takes every member's gradient (weight N), each member alone its own (1)
        work = WorkMeter(job.progress, 2 * len(names))
        weights = iter([len(names)] + [1] * len(names))

        running: list[int] = []  # the weight of the attack under way

        def tick(message: str) -> None:  # robustness_sweep says when each attack starts
            if running:
                work.done(running.pop(), message)
            else:
                work.start(message)
            running.append(next(weights, 1))

        sweep = robustness_sweep(ensemble, [eps], rules=["agd"], limit=limit, steps=steps,
                                 step_size=step_size_for(eps, steps), store=store, device=dev, progress=tick,
                                 profile=profile)
        return {"sweep": sweep, "ratios": robustness_ratios(sweep)}

    return _submit(zoo, [model_identity(zoo, names), eps, steps, limit, profile], run,
                   title=f"A-GD at eps {eps:g} on a {len(names)}-member ensemble", kind="trend-eval", device=dev,
                   store=store, meta={"members": names}, manager=manager, models=names)


def submit_trend_growth(zoo, store, ensembles: Sequence[Sequence[str]], eps: float, steps: int = 20,
                        limit: int | None = 100, device: str = "auto", manager: JobManager | None = None,
                        profile: str = "paper") -> Job:
    """Robustness as the ensemble grows (the paper's Fig. 9): clean accuracy and accuracy under A-GD at ``eps``
    of each ensemble in ``ensembles`` (e.g. the best TREND set of every size).

    Result: a DataFrame size, members (labels joined by " + "), clean_accuracy, accuracy, eps.
    """
    from .attacks.base import check_int
    from .devices import resolve_device

    sets = [check_members(zoo, members, 1) for members in ensembles]
    if not sets:
        raise TrendError("Give at least one ensemble to evaluate.")
    (eps,) = check_epsilons([eps])
    steps = check_int("Attack steps", steps)
    limit = _check_limit(limit)
    dev = resolve_device(device)
    names = list(dict.fromkeys(n for members in sets for n in members))
    profile = check_profile(profile)

    def run(job: Job) -> pd.DataFrame:
        from .ensemble import ENSEMBLE_LABEL, MajorityVote, robustness_sweep
        from .transfer import model_labels

        loaded = dict(zip(names, load_members(zoo, names, dev, job)))
        labels = dict(zip(names, model_labels(list(loaded.values()))))
        rows = []
        work = WorkMeter(job.progress, sum(len(members) for members in sets))  # an attack costs one gradient a member
        for members in sets:
            work.start(f"A-GD on {' + '.join(labels[n] for n in members)}")
            ensemble = MajorityVote([loaded[n] for n in members], names=[labels[n] for n in members],
                                    profile=profile)
            sweep = robustness_sweep(ensemble, [eps], rules=["agd"], limit=limit, steps=steps,
                                     step_size=step_size_for(eps, steps), members_alone=False, store=store,
                                     device=dev, profile=profile)
            row = sweep[sweep["model"] == ENSEMBLE_LABEL].iloc[0]
            rows.append({"size": len(members), "members": " + ".join(labels[n] for n in members),
                         "clean_accuracy": float(row["clean_accuracy"]), "accuracy": float(row["accuracy"]),
                         "eps": eps})
            work.done(len(members))
        return pd.DataFrame(rows, columns=["size", "members", "clean_accuracy", "accuracy", "eps"])

    return _submit(zoo, [[model_identity(zoo, s) for s in sets], eps, steps, limit, profile], run,
                   title=f"A-GD at eps {eps:g} on {len(sets)} growing ensembles", kind="trend-growth", device=dev,
                   store=store, meta={"ensembles": [list(s) for s in sets]}, manager=manager,
                   models=[name for s in sets for name in s])


def growing_ensembles(tm_matrix: pd.DataFrame, max_size: int, start: str, require: Sequence[str] = (),
                      min_acc: float | None = None, accuracies: dict[str, float] | None = None) -> list[list[str]]:
    """``[start]``, then the best TREND set of every size 2..``max_size`` that contains ``start`` and ``require``
    (labels as in ``tm_matrix``)."""
    from .ensemble import select_ensembles

    required = list(dict.fromkeys([start, *require]))
    sets = [[start]]
    for k in range(max(2, len(required)), int(max_size) + 1):
        best = select_ensembles(tm_matrix, k, require=required, min_acc=min_acc, accuracies=accuracies, top=1)
        sets.append(list(best["members"].iloc[0]))
    return sets


# ----------------------------------------------------------------------------- TM(eps)
def submit_tm_fit(zoo, store, source: str, target: str, fit_eps: Sequence[float], eval_eps: Sequence[float] = (),
                  steps: int = 20, limit: int | None = 200, device: str = "auto",
                  manager: JobManager | None = None, profile: str = "paper") -> Job:
    """Fit TM(eps) of ``source`` -> ``target`` under PGD from ``fit_eps`` and compare with ``eval_eps``.

    Result: source, target, attack, params (a_st, b_st, a_ss, b_ss), fit_eps, measured (eps, f_st, f_ss, tm,
    n_common, used_in_fit), curve (the fit on a dense eps grid), rmse (per quantity: DataFrame), warnings.
    """
    from .attacks.base import check_int
    from .attacks.registry import make_attack
    from .curve import MIN_POINTS
    from .devices import resolve_device

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
        import numpy as np

        from .curve import fit_tm

        from .curve import measure_tm
        from .store import MemoryStore

        src, tgt = load_members(zoo, names, dev, job)
        cache = MemoryStore() if store is False else store  # the fit below reads what the eps loop measured
        # stage 1, one eps at a time (each a PGD run of equal cost) so the bar moves per point; stage 2, the fit,
        # finds every point in the cache and only solves the two small least-squares problems
        points = sorted({*fit_list, *eval_list})
        work = WorkMeter(job.progress, len(points) + 0.05)
        for i, eps in enumerate(points):
            work.start(f"measuring TM at eps {eps:g} ({i + 1}/{len(points)} points)")
            measure_tm(src, tgt, [eps], attack, None, limit, cache, dev, profile=profile)
            work.done(1)
        work.start(f"fitting f_st and f_ss to {len(fit_list)} points")
        result = fit_tm(src, tgt, fit_list, eval_list, attack=attack, limit=limit, store=cache, device=dev,
                        profile=profile)
        measured = result.measured.copy()
        measured["tm_fit"] = result.curve.tm(measured["eps"].to_numpy(float))
        errors = pd.DataFrame([
            {"quantity": "TM (every measured eps)", "points": int(measured["tm"].notna().sum()),
             "rmse": result.rmse, "max_abs_error": result.max_abs_error},
            *({"quantity": f"{col} (fit points, images)", "points": len(fit_list), "rmse": fit.rmse,
               "max_abs_error": float(np.abs(fit(measured.loc[measured["used_in_fit"], "eps"])
                                             - measured.loc[measured["used_in_fit"], col]).max())}
              for col, fit in (("f_st", result.curve.st), ("f_ss", result.curve.ss))),
        ])
        return {"source": result.source, "target": result.target, "attack": result.attack,
                "params": result.curve.params(), "fit_eps": list(result.curve.fit_eps), "measured": measured,
                "curve": result.predictions(points=80), "rmse": errors, "warnings": list(result.warnings)}

    return _submit(zoo, [model_identity(zoo, names), fit_list, eval_list, steps, limit, profile], run,
                   title=f"TM(eps) fit over {len(set(fit_list) | set(eval_list))} eps", kind="tm-fit", device=dev,
                   store=store, meta={"source": names[0], "target": names[1]}, manager=manager, models=names)
