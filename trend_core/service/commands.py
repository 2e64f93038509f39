"""The `trend ...` command equivalent to a run launched from the dashboard, so a result shown on a page can be
reproduced (and scripted) from a shell. Every ``submit_*`` records its command in ``job.meta["command"]``.

Numbers are written with ``repr`` (the shortest text that reads back as the same float), so the command's
parameters are bit-identical to the page's; parameters at their defaults are left out.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Sequence

from trend_core.attacks.pgd import step_size_for
from trend_core.attacks.settings import attack_settings
from trend_core.models.zoo import default_home

FLAGS = {"eps": "--eps", "steps": "--steps", "step_size": "--step-size", "kappa": "--kappa"}


def number(value: Any) -> str:
    """``value`` as command-line text that parses back to the same number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def common_flags(home: str | Path | None = None, device: str = "auto", profile: str = "paper") -> list[str]:
    """--device unless auto, --home unless the default store folder, --profile unless paper."""
    flags = [] if device in (None, "auto") else ["--device", str(device)]
    if profile not in (None, "paper"):
        flags += ["--profile", str(profile)]
    if home is not None and Path(home).expanduser().resolve() != default_home().expanduser().resolve():
        flags += ["--home", str(home)]
    return flags


def attack_flags(attack: str, dataset: str, params: dict) -> list[str]:
    """Flags that give ``make_attack(attack, **params)`` on the command line (as ``build_attack`` reads them)."""
    settings = attack_settings(attack, dataset)
    defaults = settings.complete(eps=params.get("eps"), steps=params.get("steps"))
    flags = ["--attack", settings.attack]
    for name, value in params.items():
        if value is None:
            continue
        if name in ("eps", "steps", "step_size") or (name in FLAGS and value != defaults.get(name)):
            flags += [FLAGS[name], number(value)]
        elif name == "lr" and value != defaults.get("lr"):
            flags += ["--step-size", number(value)]
        elif name not in FLAGS and value != defaults.get(name):
            flags += ["--param", f"{name}={number(value)}"]
    return flags


def transfer_command(
    sources: Sequence[str],
    targets: Sequence[str],
    attack: str,
    params: dict,
    dataset: str,
    limit: int | None = None,
    split: str = "test",
    home: str | Path | None = None,
    device: str = "auto",
    profile: str = "paper",
) -> str:
    """`trend transfer ...` for a transfer run of zoo models (canonical names)."""
    models = list(dict.fromkeys([*sources, *targets]))
    args = ["trend", "transfer", "--models", *models]
    if list(sources) != models:
        args += ["--sources", *sources]
    if list(targets) != models:
        args += ["--targets", *targets]
    args += attack_flags(attack, dataset, params)
    if limit is not None:
        args += ["--limit", str(int(limit))]
    if split != "test":
        args += ["--split", split]
    return shlex.join(args + common_flags(home, device, profile))


def ensemble_attack_command(
    members: Sequence[str],
    epsilons: Sequence[float],
    rules: Sequence[str],
    steps: int,
    step_size: float,
    limit: int | None,
    seed: int = 0,
    members_alone: bool = False,
    home: str | Path | None = None,
    device: str = "auto",
    profile: str = "paper",
) -> str:
    """`trend ensemble-attack ...` for a robustness sweep of a majority vote."""
    args = [
        "trend",
        "ensemble-attack",
        "--models",
        *members,
        "--rule",
        *rules,
        "--eps",
        *map(number, epsilons),
        "--steps",
        str(int(steps)),
        "--step-size",
        number(step_size),
    ]
    if limit is not None:
        args += ["--limit", str(int(limit))]
    if seed:
        args += ["--seed", str(int(seed))]
    if members_alone:
        args.append("--members")
    return shlex.join(args + common_flags(home, device, profile))


def fit_tm_command(
    source: str,
    target: str,
    fit_eps: Sequence[float],
    eval_eps: Sequence[float],
    steps: int,
    step_size: float,
    limit: int | None,
    home: str | Path | None = None,
    device: str = "auto",
    profile: str = "paper",
) -> str:
    """`trend fit-tm ...` for a TM(eps) fit under PGD."""
    args = ["trend", "fit-tm", "--source", source, "--target", target, "--eps", *map(number, fit_eps)]
    if eval_eps:
        args += ["--eval-eps", *map(number, eval_eps)]
    args += ["--steps", str(int(steps)), "--step-size", number(step_size)]
    if limit is not None:
        args += ["--limit", str(int(limit))]
    return shlex.join(args + common_flags(home, device, profile))


def boundary_command(
    models: Sequence[str],
    index: int,
    span: float | None,
    resolution: int,
    seed: int,
    home: str | Path | None = None,
    device: str = "auto",
) -> str:
    """`trend boundary ...` for a decision-boundary slice."""
    args = ["trend", "boundary", "--model", *models, "--index", str(int(index)), "--resolution", str(int(resolution))]
    if span is not None:
        args += ["--span", number(span)]
    if seed:
        args += ["--seed", str(int(seed))]
    return shlex.join(args + common_flags(home, device))


def audit_command(
    models: Sequence[str],
    epsilons: Sequence[float],
    ensemble: bool,
    level: str = "quick",
    limit: int | None = None,
    home: str | Path | None = None,
    device: str = "auto",
) -> str:
    """`trend audit ...` for an audit of one model or the majority vote of several."""
    args = ["trend", "audit", "--models", *models, "--eps", *map(number, epsilons)]
    if ensemble:
        args.append("--ensemble")
    if level != "quick":
        args.append(f"--{level}")
    if limit is not None:
        args += ["--limit", str(int(limit))]
    return shlex.join(args + common_flags(home, device))


def train_command(names: Sequence[str], home: str | Path | None = None, device: str = "auto") -> str:
    """`trend train ...` for training zoo models."""
    return shlex.join(["trend", "train", *names, *common_flags(home, device)])


def select_command(
    tm_file: str,
    k: int,
    require: Sequence[str] = (),
    min_acc: float | None = None,
    top: int = 10,
    dataset: str | None = None,
    home: str | Path | None = None,
) -> str:
    """`trend select ...` ranking TREND candidates from a TM matrix CSV (labels as the dashboard writes them)."""
    args = ["trend", "select", "--tm", tm_file, "-k", str(int(k))]
    if require:
        args += ["--require", *require]
    if min_acc is not None:
        args += ["--min-acc", number(min_acc)]
    if dataset:
        args += ["--dataset", dataset]
    if top != 10:
        args += ["--top", str(int(top))]
    return shlex.join(args + common_flags(home))


def reproduce_command(
    dataset: str, scale: str, profile: str = "paper", home: str | Path | None = None, device: str = "auto"
) -> str:
    """`trend reproduce ...` for a reproduction run launched from the dashboard."""
    args = ["trend", "reproduce", "--dataset", dataset, "--scale", scale]
    if profile != "paper":
        args += ["--profile", profile]
    return shlex.join(args + common_flags(home, device))


def export_command(
    members: Sequence[str],
    epsilons: Sequence[float],
    out: str | Path,
    limit: int | None,
    steps: int = 20,
    level: str = "quick",
    home: str | Path | None = None,
    device: str = "auto",
) -> str:
    """`trend ensemble export ...`: the vote of ``members`` as one .pt2 file with its robustness card."""
    args = ["trend", "ensemble", "export", "--models", *members, "--out", str(out), "--eps", *map(number, epsilons)]
    if limit is not None:
        args += ["--limit", str(int(limit))]
    if steps != 20:
        args += ["--steps", str(int(steps))]
    if level != "quick":
        args.append(f"--{level}")
    return shlex.join(args + common_flags(home, device))


def card_commands(
    card: dict, out: str | Path, limit: int | None, home: str | Path | None = None, device: str = "auto"
) -> list[str]:
    """The commands that reproduce a robustness card (``RobustnessCard.to_dict()``) of zoo models: the export that
    writes it all, then each part alone (the transfer run behind its TM, A-GD per eps, the audit); none when a
    member was given as a module (it has no zoo name)."""
    names = [m.get("name") for m in card["members"]]
    if not all(names):
        return []
    epsilons = [row["eps"] for row in card["agd"]]
    steps = card["agd"][0]["steps"] if card["agd"] else 20
    level = card["audit"][0]["level"] if card["audit"] else "quick"
    lines = [export_command(names, epsilons, out, limit, steps, level, home, device)]
    tm = card.get("tm") or {}
    if tm.get("source") == "measured" and tm.get("params"):
        lines.append(
            transfer_command(names, names, "pgd", tm["params"], card["dataset"], limit, home=home, device=device)
        )
    for eps in epsilons:
        lines.append(
            ensemble_attack_command(
                names,
                [eps],
                ["agd"],
                steps,
                step_size_for(eps, steps),
                limit,
                card.get("seed", 0),
                home=home,
                device=device,
            )
        )
    lines.append(audit_command(names, epsilons, True, level, limit, home=home, device=device))
    return lines
