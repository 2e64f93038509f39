"""`trend ensemble-attack`, `trend select`, `trend fit-tm`, `trend boundary`: ensembles, TREND, TM(eps), boundaries."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from trend_core.cli.common import (
    add_common,
    add_profile,
    check_outputs,
    emit_json,
    emit_table,
    load_models,
    parse_model_names,
    profile_of,
    work_bar,
    zoo_from,
)
from trend_core.cli.transfer import MAX_SEED, _number, build_attack
from trend_core.config.profiles import get_profile
from trend_core.errors import TrendError


def register(sub: argparse._SubParsersAction) -> None:
    ea = sub.add_parser(
        "ensemble-attack",
        help="attack a majority-vote ensemble with D-AG, EMPIR, U-GD or A-GD",
        description="Attack success and accuracy under attack of a majority-vote ensemble (ties: "
        "expectation over the random tie-break) for each rule and eps.",
    )
    ea.add_argument("--models", nargs="+", required=True, metavar="NAME", help="the ensemble's members")
    ea.add_argument("--rule", nargs="+", default=["all"], metavar="RULE", help="dag, empir, ugd, agd or all (default)")
    ea.add_argument(
        "--eps",
        nargs="+",
        default=None,
        metavar="E",
        help="eps values (default: the dataset's; 0.01 under --profile authors)",
    )
    ea.add_argument("--steps", default="40", help="PGD steps (default 40)")
    ea.add_argument(
        "--step-size",
        default=None,
        help="step size alpha (default 0.01, larger when the steps could not reach the largest eps; "
        "also the random start radius, which is eps under --profile authors)",
    )
    ea.add_argument(
        "--members", action="store_true", help="also attack each member alone and print 'x times more robust' ratios"
    )
    ea.add_argument("--limit", default=None, help="use the first N test images")
    ea.add_argument("--seed", default="0", help="random start and tie-break seed")
    ea.add_argument("--no-cache", action="store_true", help="compute afresh and store nothing")
    add_profile(ea)
    ea.add_argument("--json", action="store_true")
    add_common(ea)
    ea.set_defaults(func=cmd_ensemble_attack)

    sel = sub.add_parser(
        "select",
        help="TREND: the k-member ensembles with the lowest mean pairwise TM",
        description="Rank k-member sets from a TM matrix (the CSV of `trend transfer --csv` or "
        "--long-csv) by mean pairwise symmetrized TM.",
    )
    sel.add_argument("--tm", required=True, metavar="FILE.csv", help="TM matrix CSV (matrix or long form)")
    sel.add_argument("-k", required=True, help="ensemble size (>= 2)")
    sel.add_argument("--require", nargs="+", default=[], metavar="NAME", help="members every candidate must contain")
    sel.add_argument("--min-acc", default=None, help="floor on clean test accuracy (fraction, e.g. 0.9), from the zoo")
    sel.add_argument("--dataset", default=None, help="the models' dataset, when labels are ambiguous in the zoo")
    sel.add_argument("--top", default="10", help="how many candidate sets to list (default 10)")
    sel.add_argument("--json", action="store_true")
    add_common(sel)
    sel.set_defaults(func=cmd_select)

    fit = sub.add_parser(
        "fit-tm",
        help="fit TM(eps) = f_st/f_ss from a few eps and report its RMSE",
        description="Measure f_st and f_ss of one pair at the fit eps (and --eval-eps), fit "
        "a (1 - exp(b eps)) to each, and compare predicted with measured TM.",
    )
    fit.add_argument(
        "--source", required=True, metavar="NAME", help="the attacked model (a zoo model or user/<dataset>/<name>)"
    )
    fit.add_argument(
        "--target", required=True, metavar="NAME", help="the evaluated model (a zoo model or user/<dataset>/<name>)"
    )
    fit.add_argument(
        "--eps",
        nargs="+",
        default=None,
        metavar="E",
        help="eps values to fit from (>= 3; default 4 over the dataset's range)",
    )
    fit.add_argument("--eval-eps", nargs="+", default=[], metavar="E", help="more measured eps to judge the fit on")
    fit.add_argument("--attack", default="pgd", help="pgd (default) or pgd-l2")
    fit.add_argument("--steps", default=None, help="attack iterations (default: the attack's, 40 for pgd)")
    fit.add_argument("--step-size", default=None, help="attack step size (default: the attack's, 0.01 for pgd)")
    fit.add_argument("--limit", default=None, help="use the first N test images")
    fit.add_argument("--points", default="0", help="also print the fitted curve at this many eps (default 0)")
    fit.add_argument("--no-cache", action="store_true")
    add_profile(fit)
    fit.add_argument("--json", action="store_true")
    add_common(fit)
    fit.set_defaults(func=cmd_fit_tm)

    bd = sub.add_parser(
        "boundary",
        help="decision-boundary slice around one test image (PNG and distances)",
        description="Classify a 2-D grid around one image (x: the gradient direction of the "
        "first model, y: a random orthogonal direction) for each model.",
    )
    bd.add_argument(
        "--model",
        nargs="+",
        required=True,
        metavar="NAME",
        help="one or more models (zoo models or imported networks, user/<dataset>/<name>)",
    )
    bd.add_argument("--index", required=True, help="test image index")
    bd.add_argument("--out", default=None, metavar="FILE.png", help="write the class maps as a PNG")
    bd.add_argument("--span", default=None, help="grid half-width in L2 (default 2 eps sqrt(pixels))")
    bd.add_argument("--resolution", default="41", help="grid points per axis, odd (default 41)")
    bd.add_argument("--seed", default="0", help="seed of the random y direction")
    bd.add_argument("--json", action="store_true")
    add_common(bd)
    bd.set_defaults(func=cmd_boundary)


# ----------------------------------------------------------------------------- ensemble-attack
def cmd_ensemble_attack(args: argparse.Namespace) -> int:
    # the engine (torch) is imported when a command runs, not when the parser is built: `trend --help` stays fast
    from trend_core.attacks.base import MAX_STEPS
    from trend_core.attacks.ensemble_pgd import RULE_NAMES, check_rule
    from trend_core.experiments.ensemble_sweep import robustness_ratios, robustness_sweep
    from trend_core.nn.vote import MajorityVote
    from trend_core.storage.store import get_store

    profile = profile_of(args)
    specs = _one_dataset(parse_model_names(args.models, profile))  # imported user/... networks too
    if len(specs) < 2:
        raise TrendError("An ensemble needs at least two distinct member models.")
    rules = list(RULE_NAMES) if [r.lower() for r in args.rule] == ["all"] else [check_rule(r) for r in args.rule]
    if args.eps is None and profile != "paper":
        eps_list = [get_profile(profile).ensemble_eps]
    else:
        eps_list = _eps_list(args.eps, specs[0].dataset)
    steps = _number("--steps", args.steps, int, minimum=1, maximum=MAX_STEPS)
    step_size = None if args.step_size is None else _number("--step-size", args.step_size, float)
    seed = _number("--seed", args.seed, int, minimum=0, maximum=MAX_SEED)
    limit = None if args.limit is None else _number("--limit", args.limit, int, minimum=1)
    models = load_models(args, [s.name for s in specs])
    cache = None if args.no_cache else get_store(args.home)
    with work_bar("ensemble attacks") as report:  # weighed by gradients: the ensemble's N, each member's 1
        sweep = robustness_sweep(
            MajorityVote(models, seed, profile=profile),
            eps_list,
            rules,
            limit=limit,
            steps=steps,
            step_size=step_size,
            seed=seed,
            members_alone=args.members,
            cache=cache,
            device=args.device,
            progress=report,
            profile=profile,
        )
    ens = sweep[sweep["model"] == "ensemble"].drop(columns=["model", "acc_on_ensemble_adv"]).set_index(["rule", "eps"])
    members = sweep[sweep["model"] != "ensemble"].pivot_table(
        index=["rule", "eps"], columns="model", values="acc_on_ensemble_adv", sort=False
    )
    table = ens.join(members.add_prefix("on_adv:"))
    print(
        f"majority vote of {len(models)} models on {'all' if limit is None else f'the first {limit}'} test images; "
        "accuracy = under attack (ties: expectation over the draw); on_adv:M = member M's accuracy on the "
        "ensemble's adversarial images",
        file=sys.stderr,
    )
    if args.json:
        out = {"ensemble": [s.name for s in specs], "sweep": sweep.to_dict(orient="records")}
        if args.members:
            out["ratios"] = robustness_ratios(sweep).to_dict(orient="records")
        emit_json(out)
        return 0
    emit_table(table, False)
    if args.members:
        print()
        alone = sweep[sweep["model"] != "ensemble"].pivot_table(
            index=["rule", "eps"], columns="model", values="accuracy", sort=False
        )
        print("each member attacked alone (accuracy under attack):")
        emit_table(alone, False)
        print()
        ratios = robustness_ratios(sweep).pivot_table(
            index=["rule", "eps"], columns="member", values="times_more_robust", sort=False
        )
        print("ensemble accuracy / member accuracy (x times more robust):")
        emit_table(ratios, False, float_format="{:.2f}")
    return 0


# ----------------------------------------------------------------------------- select
def cmd_select(args: argparse.Namespace) -> int:
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.ensemble.selection import read_tm, select_ensembles

    k = _number("-k", args.k, int)
    top = _number("--top", args.top, int, minimum=1)
    min_acc = None if args.min_acc is None else _number("--min-acc", args.min_acc, float, minimum=0, maximum=1)
    tm = read_tm(args.tm)
    accuracies = (
        _zoo_accuracies(args, list(tm.index))
        if min_acc is not None
        else _zoo_accuracies(args, list(tm.index), strict=False)
    )
    ranked = select_ensembles(tm, k, require=args.require, min_acc=min_acc, accuracies=accuracies, top=top)
    print(
        f"TREND: {ranked.attrs['candidates']} candidate sets of {k} ({ranked.attrs['method']} search); "
        "score = mean pairwise symmetrized TM (lower is better)",
        file=sys.stderr,
    )
    if args.json:
        emit_json(ranked.reset_index().to_dict(orient="records"))
    else:
        emit_table(ranked.drop(columns=["members"]), False)
    return 0


def _zoo_accuracies(args: argparse.Namespace, labels: list[str], strict: bool = True) -> dict[str, float] | None:
    """Clean test accuracy per TM label, from the zoo's metadata (labels: full names, the labels the dashboard
    shows, or short names)."""
    # local: labels parse specs, which load the model registry (keeps start-up fast)
    from trend_core.config.labels import label_map, models_for_label

    zoo = zoo_from(args)
    rows = {row["name"]: row for row in zoo.list(args.dataset, imported_networks=True) if row.get("name")}
    accuracies = {}
    for label in labels:
        found = [rows[n] for n in models_for_label(label, list(rows))]
        if len(found) != 1 or found[0].get("test_acc") is None:
            if not strict:
                continue
            if len(found) > 1:
                shown = label_map(m["name"] for m in found)
                datasets = {m.get("dataset") or m.get("spec", {}).get("dataset") for m in found}
                hint = " or name the dataset with --dataset" if len(datasets) > 1 else ""
                raise TrendError(
                    f"{label!r} matches {len(found)} zoo models ({', '.join(shown.values())}); use those labels in the "
                    f"TM file (as the dashboard's downloads do){hint}."
                )
            raise TrendError(
                f"No clean accuracy for {label!r} in the zoo at {zoo.root}; train it there or drop --min-acc."
            )
        accuracies[label] = float(found[0]["test_acc"])
    return accuracies or None


# ----------------------------------------------------------------------------- fit-tm
def cmd_fit_tm(args: argparse.Namespace) -> int:
    # local: loads torch only when the command runs (keeps start-up fast)
    from trend_core.experiments.curve import MIN_POINTS, default_fit_eps, fit_tm_stepwise
    from trend_core.storage.store import MemoryStore, get_store

    profile = profile_of(args)
    specs = _one_dataset(parse_model_names([args.source, args.target], profile))  # imported user/... too
    if len(specs) != 2:
        raise TrendError("Source and target are the same model; TM(eps) is 1 by definition.")
    dataset = specs[0].dataset
    fit_eps = (
        default_fit_eps(dataset, profile=profile)
        if args.eps is None
        else [_number("--eps", e, float) for e in args.eps]
    )
    eval_eps = [_number("--eval-eps", e, float) for e in args.eval_eps]
    top = max([*fit_eps, *eval_eps])  # the attack is built at the largest eps: its step size must reach it
    attack = build_attack(args.attack, dataset, eps=str(top), steps=args.steps, step_size=args.step_size)
    if attack.minimum_norm:
        raise TrendError("TM(eps) needs an eps-bounded attack (pgd or pgd-l2), not a minimum-norm one.")
    limit = None if args.limit is None else _number("--limit", args.limit, int, minimum=1)
    points = _number("--points", args.points, int, minimum=0, maximum=10_000)
    if len({float(e) for e in fit_eps}) < MIN_POINTS:  # before any model is loaded or trained
        raise TrendError(
            f"The TM(eps) fit needs at least {MIN_POINTS} distinct eps values, got {len({float(e) for e in fit_eps})}."
        )
    source, target = load_models(args, [s.name for s in specs])
    cache = MemoryStore() if args.no_cache else get_store(args.home)  # the fit reads what the eps loop measured
    with work_bar("TM(eps)") as report:  # one eps at a time, so the bar moves per point (equal PGD runs)
        result = fit_tm_stepwise(
            source,
            target,
            fit_eps,
            eval_eps,
            attack,
            limit=limit,
            cache=cache,
            device=args.device,
            profile=profile,
            progress=report,
        )
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    if args.json:
        emit_json({**result.to_dict(), "curve": result.predictions(points).to_dict(orient="records") if points else []})
        return 0
    params = result.curve.params()
    print(f"{result.source} -> {result.target} under {result.attack}")
    print(f"f_st(eps) = {params['a_st']:.2f} (1 - exp({params['b_st']:.3f} eps))")
    print(f"f_ss(eps) = {params['a_ss']:.2f} (1 - exp({params['b_ss']:.3f} eps))")
    print(
        f"RMSE of TM over {int(result.measured['tm'].notna().sum())} measured eps: {result.rmse:.4f} "
        f"(max |error| {result.max_abs_error:.4f})"
    )
    measured = result.measured.assign(tm_fit=result.curve.tm(result.measured["eps"].to_numpy(float)))
    emit_table(measured.set_index("eps"), False, float_format="{:.4f}")
    if points:
        print()
        emit_table(result.predictions(points).set_index("eps"), False, float_format="{:.4f}")
    return 0


# ----------------------------------------------------------------------------- boundary
def cmd_boundary(args: argparse.Namespace) -> int:
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.data.datasets import load_dataset
    from trend_core.experiments.boundary import decision_boundary
    from trend_core.models.checkpoints import atomic_write_bytes
    from trend_core.plots.boundary import class_map_image

    check_outputs(out=args.out)
    specs = _one_dataset(parse_model_names(args.model))  # imported user/... networks too
    index = _number("--index", args.index, int)
    resolution = _number("--resolution", args.resolution, int, minimum=3, maximum=1001)
    span = None if args.span is None else _number("--span", args.span, float)
    seed = _number("--seed", args.seed, int, minimum=0, maximum=MAX_SEED)
    x, y = load_dataset(specs[0].dataset).tensors("test")
    if not 0 <= index < len(x):
        raise TrendError(f"--index must be in 0..{len(x) - 1} (the {specs[0].dataset} test images), got {index}.")
    if args.out and not str(args.out).lower().endswith(".png"):
        raise TrendError(f"--out must name a .png file, got {args.out!r}.")
    models = load_models(args, [s.name for s in specs])
    result = decision_boundary(models, x[index], int(y[index]), span=span, resolution=resolution, seed=seed)
    if args.out:
        buffer = io.BytesIO()
        class_map_image(result).save(buffer, format="PNG")
        atomic_write_bytes(Path(args.out), buffer.getvalue())
        print(
            f"wrote {args.out} (models left to right: {', '.join(result.names)}; x: gradient of "
            f"{result.reference}, y: random orthogonal; +y at the top)",
            file=sys.stderr,
        )
    table = result.distance_frame()
    if args.json:
        emit_json(
            {
                "index": index,
                "label": result.label,
                "span": float(result.x_offsets[-1]),
                "resolution": resolution,
                "models": table.reset_index().to_dict(orient="records"),
            }
        )
    else:
        print(
            f"image {index} (label {result.label}); distance (L2) to the nearest other class along each axis "
            f"within span {float(result.x_offsets[-1]):.3f} (blank: none)"
        )
        emit_table(table, False)
    return 0


# ----------------------------------------------------------------------------- helpers
def _one_dataset(specs: list) -> list:
    specs = list(dict.fromkeys(specs))
    datasets = sorted({s.dataset for s in specs})
    if len(datasets) != 1:
        raise TrendError(f"All models must share one dataset, got {', '.join(datasets)}.")
    return specs


def _eps_list(values: list[str] | None, dataset: str) -> list[float]:
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.config.datasets import get_info

    if not values:
        return [get_info(dataset).default_eps]
    return [_number("--eps", v, float) for v in values]
