"""Robustness of a majority-vote ensemble under the ensemble attacks: accuracy under
D-AG, EMPIR, U-GD and A-GD for the ensemble (and, when asked, each member attacked alone), and "x times more
robust" ratios.

It sits above the vote (``ensemble.py``) and the ensemble attack (``attacks/ensemble_pgd.py``), so neither of
them imports the other's caller.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from trend_core.attacks.ensemble_pgd import EnsemblePGD, check_rule
from trend_core.attacks.pgd import step_size_for
from trend_core.ensemble.selection import ENSEMBLE_LABEL
from trend_core.errors import TrendError
from trend_core.experiments.attack_cache import attack_cached
from trend_core.experiments.eval_data import evaluation_data
from trend_core.experiments.parallel_sources import prefetch_in_workers
from trend_core.experiments.units import attack_label, prefetch_attacks
from trend_core.nn.vote import MajorityVote, as_ensemble
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.executors import get_executor
from trend_core.runtime.options import RunOptions, run_options
from trend_core.runtime.progress import WorkMeter, no_progress
from trend_core.storage.store import resolve_cache


def robustness_sweep(
    members: Sequence[nn.Module] | MajorityVote,
    epsilons: Sequence[float],
    rules: Sequence[str] = ("agd",),
    *,
    data: Any = None,
    steps: int = 40,
    step_size: float | None = None,
    seed: int = 0,
    members_alone: bool = False,
    draws: int | None = None,
    outcomes: dict[tuple[str, float, str], np.ndarray] | None = None,
    options: RunOptions | None = None,
    **keywords: Any,
) -> pd.DataFrame:
    """Accuracy under each ensemble attack over ``epsilons``: the ensemble, and (opt-in) each member attacked alone.

    Only the ensemble is attacked unless ``members_alone=True``, which also attacks every member alone (one more
    attack per member; the "x times more robust" ratios need it); without it the members' rows carry NaN
    accuracy and their accuracy on the ensemble's adversarial images. One row per (rule, eps, model). ``model`` is ``"ensemble"`` or a member's label; ``accuracy`` is accuracy
    under attack over all images (the paper's robustness; for the ensemble, the expectation over tie-break
    draws), ``success_rate`` the share of correctly classified images that the attack turned wrong, and for
    members ``acc_on_ensemble_adv`` their accuracy on the images crafted against the ensemble (gradient
    domination shows as one member fooled while the others are not). A member attacked alone gets the same
    attack with itself as a one-member ensemble, which for every rule is PGD with the paper's random start.
    ``step_size`` defaults to ``step_size_for(max eps, steps)`` (the paper's 0.01 unless that cannot reach eps).
    ``data``: see ``eval_data.evaluation_data``. ``options`` (or its fields as keywords, ``runtime.options``):
    ``cache`` None keeps nothing; True, a folder or a Store keeps the adversarial images, so a repeated sweep only
    re-evaluates. ``profile`` (paper or authors) sets the vote's tie rule and the attacks' random start.
    ``progress(fraction, message)`` as each attack starts, weighed by the gradients it takes (the ensemble's N,
    a member's 1). With a distributed ``executor`` (``trend_core.runtime.executors``) every (rule, attacked
    model, eps) point first runs as its own unit, and the loop below reads the store.
    """
    opts = run_options(options, keywords, "robustness_sweep")
    profile, device, progress = opts.profile, opts.device, opts.progress
    ensemble = as_ensemble(members, seed, profile)
    rules = [check_rule(r) for r in rules]
    if not rules:
        raise TrendError("Pick at least one ensemble attack rule (dag, empir, ugd, agd).")
    eps_list = list(epsilons)
    if not eps_list:
        raise TrendError("Give at least one eps.")
    dev = resolve_device(device)
    ensemble.to(dev)
    x, y = evaluation_data(list(ensemble.members), data, "test", opts.limit)
    x, y = x.to(dev), y.to(dev)
    store = resolve_cache(opts.cache)
    step_size = step_size_for(max(eps_list), steps) if step_size is None else step_size
    singles = [MajorityVote([m], seed, [name], profile) for m, name in zip(ensemble.members, ensemble.names)]
    clean_ens = ensemble.expected_accuracy(x, y, draws)
    clean_members = [s.expected_accuracy(x, y) for s in singles]
    keep = _outcome_keeper(outcomes)
    keep("clean", 0.0, ENSEMBLE_LABEL, clean_ens)
    for single, clean in zip(singles, clean_members):
        keep("clean", 0.0, single.names[0], clean)
    runner = get_executor(opts.executor)
    points: list = []
    for rule in rules:
        attack = EnsemblePGD(rule, eps_list[0], steps=steps, step_size=step_size, seed=seed, profile=profile)
        points += [(ensemble, attack)] + ([(single, attack) for single in singles] if members_alone else [])
    if runner.distributed:
        prefetch_attacks(runner, points, x, y, eps_list, store, device, progress, cancel=opts.cancel)
        progress = None  # the loop below reads the store
    elif prefetch_in_workers(points, x, y, eps_list, store, dev, opts.executor, progress, cancel=opts.cancel):
        progress = None  # small images on the CPU: the points ran one per core (``parallel_sources``)
    n = len(singles)
    work = WorkMeter(progress or no_progress, len(rules) * n * (2 if members_alone else 1))
    rows = []
    for rule in rules:
        attack = EnsemblePGD(rule, eps_list[0], steps=steps, step_size=step_size, seed=seed, profile=profile)
        work.start(attack_label(attack, ensemble))
        entries, _ = attack_cached(ensemble, attack, x, y, eps_list, store)
        work.done(n)  # the attack on the vote takes every member's gradient
        member_entries = []
        if members_alone:
            for single in singles:
                work.start(attack_label(attack, single))
                member_entries.append(attack_cached(single, attack, x, y, eps_list, store)[0])
                work.done(1)
        for slot, eps in enumerate(eps_list):
            adv = entries[slot]["x_adv"].to(dev)
            on_ens = ensemble.votes(adv) == y
            ens_adv = keep(rule, eps, ENSEMBLE_LABEL, ensemble.expected_accuracy(adv, y, draws))
            rows.append(_robustness_row(rule, eps, ENSEMBLE_LABEL, clean_ens, ens_adv))
            for i, single in enumerate(singles):
                row = {"acc_on_ensemble_adv": float(on_ens[i].float().mean())}
                if members_alone:
                    member_adv = member_entries[i][slot]["x_adv"].to(dev)
                    alone = keep(rule, eps, single.names[0], single.expected_accuracy(member_adv, y))
                    row = {
                        **_robustness_row(rule, eps, single.names[0], clean_members[i], alone),
                        **row,
                    }
                else:
                    row = {**_robustness_row(rule, eps, single.names[0], clean_members[i], None), **row}
                rows.append(row)
    return pd.DataFrame(
        rows, columns=["rule", "eps", "model", "clean_accuracy", "accuracy", "success_rate", "acc_on_ensemble_adv"]
    )


def _outcome_keeper(
    outcomes: dict[tuple[str, float, str], np.ndarray] | None,
) -> Callable[[str, float, str, torch.Tensor], torch.Tensor]:
    """``keep(rule, eps, model, per_image)``: note the per-image tensor in ``outcomes`` (when given), return it."""

    def keep(rule: str, eps: float, model: str, per_image: torch.Tensor) -> torch.Tensor:
        if outcomes is not None:
            outcomes[(rule, float(eps), model)] = per_image.detach().float().cpu().numpy()
        return per_image

    return keep


def _robustness_row(rule: str, eps: float, model: str, clean: torch.Tensor, adv: torch.Tensor | None) -> dict:
    """Accuracy under attack, and the success rate = expected (right on clean and wrong on adv) / expected right."""
    row = {"rule": rule, "eps": float(eps), "model": model, "clean_accuracy": float(clean.mean())}
    if adv is None:
        return {**row, "accuracy": math.nan, "success_rate": math.nan}
    right = float(clean.sum())
    fooled = float((clean * (1 - adv)).sum())
    return {**row, "accuracy": float(adv.mean()), "success_rate": fooled / right if right else math.nan}


def robustness_ratios(sweep: pd.DataFrame) -> pd.DataFrame:
    """ "x times more robust": the ensemble's accuracy under attack over each member's, per rule and eps."""
    needed = {"rule", "eps", "model", "accuracy"}
    if not needed <= set(sweep.columns):
        raise TrendError(f"A robustness table needs columns {', '.join(sorted(needed))}.")
    ens = sweep[sweep["model"] == ENSEMBLE_LABEL].set_index(["rule", "eps"])["accuracy"]
    rows = []
    for row in sweep[sweep["model"] != ENSEMBLE_LABEL].itertuples(index=False):
        ens_acc = float(ens.get((row.rule, row.eps), math.nan))
        member = float(row.accuracy)
        ratio = ens_acc / member if member > 0 else (math.inf if ens_acc > 0 else math.nan)
        rows.append(
            {
                "rule": row.rule,
                "eps": row.eps,
                "member": row.model,
                "ensemble_accuracy": ens_acc,
                "member_accuracy": member,
                "times_more_robust": ratio,
            }
        )
    return pd.DataFrame(
        rows, columns=["rule", "eps", "member", "ensemble_accuracy", "member_accuracy", "times_more_robust"]
    )
