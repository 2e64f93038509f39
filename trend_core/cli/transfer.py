"""`trend transfer`: the TM matrix of a set of models under one attack.

Each source is attacked once and every target evaluated on its adversarial images; results are cached in
the store, so a rerun is instant and an interrupted sweep resumes at the first source not yet done.
"""

from __future__ import annotations

import argparse
import sys

from trend_core.cli.common import (
    add_common,
    add_profile,
    check_outputs,
    emit_table,
    load_models,
    parse_model_names,
    profile_of,
    work_bar,
    zoo_from,
)
from trend_core.errors import TrendError

MAX_SEED = 2**32 - 1  # seeds as numpy and every torch generator accept them


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transfer",
        help="TM matrix: attack each source once, evaluate every target on its images",
        description="Print (or write) the transferability matrix with row and column averages "
        "(averages leave out the diagonal).",
    )
    p.add_argument(
        "--models",
        nargs="+",
        required=True,
        metavar="NAME",
        help="model names (e.g. digits/resnet18-w0.25/Q2/sgd/s0), preset:digits or imported networks "
        "(user/digits/my-net); missing zoo models are trained",
    )
    p.add_argument(
        "--attack",
        default="pgd",
        help="pgd, pgd-l2, cw, deepfool (L2) or deepfool-linf (the paper's DeepFool rows; default pgd)",
    )
    p.add_argument("--eps", default=None, help="perturbation budget (default: the dataset's; none for cw/deepfool)")
    p.add_argument("--steps", default=None, help="attack iterations")
    p.add_argument("--step-size", default=None, help="PGD step size (the learning rate for cw)")
    p.add_argument("--kappa", default=None, help="CW confidence (0 or 30 in the paper)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other attack parameter, e.g. --param overshoot=0.02 (repeatable)",
    )
    p.add_argument("--limit", default=None, help="use the first N images of the split")
    p.add_argument("--split", default="test", help="test (default), val or train")
    p.add_argument("--sources", nargs="+", default=None, metavar="NAME", help="attack only these of --models")
    p.add_argument("--targets", nargs="+", default=None, metavar="NAME", help="evaluate only these of --models")
    p.add_argument("--json", action="store_true", help="print the result (matrix, pairs, settings) as JSON")
    p.add_argument("--csv", default=None, metavar="FILE", help="write the matrix (row_avg column, col_avg row) as CSV")
    p.add_argument("--long-csv", default=None, metavar="FILE", help="write one row per (source, target) pair as CSV")
    p.add_argument("--no-cache", action="store_true", help="compute everything afresh and store nothing")
    add_profile(p)
    add_common(p)
    p.set_defaults(func=cmd_transfer)


def cmd_transfer(args: argparse.Namespace) -> int:
    # the engine (torch) is imported when a command runs, not when the parser is built: `trend --help` stays fast
    from trend_core.experiments.transfer import run_transfer
    from trend_core.storage.store import get_store

    check_outputs(csv=args.csv, long_csv=args.long_csv)
    zoo_from(args)  # a --home that cannot be used fails here, before any training or attack
    specs = list(dict.fromkeys(parse_model_names(args.models, args.profile)))
    datasets = sorted({spec.dataset for spec in specs})
    if len(datasets) != 1:
        raise TrendError(f"All models of a transfer run must share one dataset, got {', '.join(datasets)}.")
    attack = build_attack(
        args.attack,
        datasets[0],
        eps=args.eps,
        steps=args.steps,
        step_size=args.step_size,
        kappa=args.kappa,
        params=args.param,
        profile=profile_of(args),
    )
    limit = None if args.limit is None else _number("--limit", args.limit, int, minimum=1)
    if args.split not in ("train", "val", "test"):
        raise TrendError(f"Unknown split {args.split!r}; choose train, val or test.")
    sources = _subset(args.sources, specs, "--sources", args.profile)
    targets = _subset(args.targets, specs, "--targets", args.profile)
    models = load_models(args, [spec.name for spec in specs])
    cache = None if args.no_cache else get_store(args.home)
    with work_bar("sources") as progress:
        result = run_transfer(
            models,
            attack,
            split=args.split,
            limit=limit,
            cache=cache,
            progress=progress,
            device=args.device,
            sources=sources,
            targets=targets,
            profile=profile_of(args),
        )
    bound = f"eps={result.eps}" if result.eps is not None else "no eps bound (minimum-norm perturbations)"
    print(
        f"TM under {result.attack} at {bound} on {result.n_images} {result.split} images "
        "(rows: source, columns: target; averages leave out the diagonal)",
        file=sys.stderr,
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.long_csv:
        emit_table(result.long().set_index(["source", "target"]), False, csv_path=args.long_csv)
    if args.csv:
        emit_table(result.matrix(), False, csv_path=args.csv)
    if args.json:
        print(result.to_json())
    elif not (args.csv or args.long_csv):
        emit_table(result.matrix(), False)
    return 0


def build_attack(
    name: str, dataset: str, eps=None, steps=None, step_size=None, kappa=None, params=(), profile: str = "paper"
):
    """The attack from command-line text, completed by ``attack_settings`` (the dashboard's defaults too): eps
    defaults to the dataset's for eps-bounded attacks and to none (unclipped minimum-norm perturbations, as the
    paper reports them) for CW and DeepFool; PGD's step size follows ``step_size_for(eps, steps)``. Attacks with
    profile-dependent settings (CW's abort rule) get ``profile``."""
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.attacks.registry import attack_parameters, make_attack
    from trend_core.attacks.settings import attack_settings

    settings = attack_settings(name, dataset)  # an unknown attack name fails here, in one sentence
    names = {s.name for s in settings.params}
    given: dict = {
        "eps": None if eps is None else _number("--eps", eps, float),
        "steps": None if steps is None else _number("--steps", steps, int),
        "kappa": None if kappa is None else _number("--kappa", kappa, float),
    }
    if step_size is not None:
        given["lr" if "step_size" not in names and "lr" in names else "step_size"] = _number(
            "--step-size", step_size, float
        )
    for text in params:
        key, sep, value = str(text).partition("=")
        if not sep or key.strip() not in names:
            raise TrendError(f"--param takes NAME=VALUE with NAME one of {', '.join(sorted(names))}; got {text!r}.")
        given[key.strip()] = _param_value(
            f"--param {key.strip()}", value.strip(), settings.setting(key.strip()).default
        )
    values = settings.complete(**{k: v for k, v in given.items() if v is not None})  # an unknown one: one sentence
    if profile != "paper" and "profile" in attack_parameters(name):
        values["profile"] = profile
    return make_attack(name, **values)


def _param_value(flag: str, text: str, default):
    """``text`` as the type of the parameter's default (bool, int or float)."""
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise TrendError(f"{flag} must be true or false, got {text!r}.")
        return text.lower() in ("true", "1", "yes")
    return _number(flag, text, int if isinstance(default, int) else float)


def _number(flag: str, text: str, kind: type, minimum: float | None = None, maximum: float | None = None):
    """``text`` as an int or a finite float within [minimum, maximum] (each bound optional), else a TrendError."""
    what = "a whole number" if kind is int else "a number"
    shown = text if len(str(text)) <= 40 else str(text)[:37] + "..."
    try:
        value = kind(text)
    except (TypeError, ValueError):  # also int() of thousands of digits
        raise TrendError(f"{flag} must be {what}, got {shown!r}.") from None
    if kind is float and (value != value or abs(value) == float("inf")):
        raise TrendError(f"{flag} must be a finite number, got {shown!r}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = (
            f"between {minimum} and {maximum}"
            if minimum is not None and maximum is not None
            else f"at least {minimum}"
            if minimum is not None
            else f"at most {maximum}"
        )
        raise TrendError(f"{flag} must be {bounds}, got {shown}.")
    return value


def _subset(names: list[str] | None, specs: list, flag: str, profile: str | None = None) -> list[str] | None:
    if names is None:
        return None
    chosen = [spec.name for spec in parse_model_names(names, profile)]
    outside = [name for name in chosen if name not in {spec.name for spec in specs}]
    if outside:
        raise TrendError(f"{flag} names {outside[0]}, which is not among --models.")
    return chosen
