"""TM(eps) fits as jobs: a source -> target pair under PGD, fitted from a few eps and checked against more."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from trend_core.attacks.base import check_int
from trend_core.attacks.pgd import step_size_for
from trend_core.attacks.registry import make_attack
from trend_core.config.profiles import check_profile
from trend_core.errors import TrendError
from trend_core.experiments.curve import MIN_POINTS, TMFitResult, fit_tm_stepwise
from trend_core.models.members import check_members, load_members, model_identity
from trend_core.models.zoo import Zoo
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.jobs import Job, JobManager
from trend_core.service import commands
from trend_core.service.checks import check_epsilons, check_limit
from trend_core.service.submit import submit_job
from trend_core.storage.store import AnyStore, MemoryStore


def fit_errors(result: TMFitResult, measured: pd.DataFrame, fit_points: int) -> pd.DataFrame:
    """How far the fit is from what was measured: TM over every measured eps, f_st and f_ss over the fit points."""
    used = measured["used_in_fit"]
    return pd.DataFrame(
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
                    "points": fit_points,
                    "rmse": fit.rmse,
                    "max_abs_error": float(np.abs(fit(measured.loc[used, "eps"]) - measured.loc[used, col]).max()),
                }
                for col, fit in (("f_st", result.curve.st), ("f_ss", result.curve.ss))
            ),
        ]
    )


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
    limit = check_limit(limit)
    top = max([*fit_list, *eval_list])
    attack = make_attack("pgd", eps=top, steps=steps)  # its own default step size reaches the largest eps
    dev = resolve_device(device)
    profile = check_profile(profile)

    def run(job: Job) -> dict:
        src, tgt = load_members(zoo, names, dev, job)
        cache = MemoryStore() if store is False or store is None else store  # the fit reads what the loop measured
        result = fit_tm_stepwise(
            src,
            tgt,
            fit_list,
            eval_list,
            attack,
            limit=limit,
            cache=cache,
            device=dev,
            profile=profile,
            progress=job.progress,
        )
        measured = result.measured.copy()
        measured["tm_fit"] = result.curve.tm(measured["eps"].to_numpy(float))
        return {
            "source": result.source,
            "target": result.target,
            "attack": result.attack,
            "params": result.curve.params(),
            "fit_eps": list(result.curve.fit_eps),
            "measured": measured,
            "curve": result.predictions(points=80),
            "rmse": fit_errors(result, measured, len(fit_list)),
            "warnings": list(result.warnings),
        }

    return submit_job(
        zoo,
        [model_identity(zoo, names), fit_list, eval_list, steps, limit, profile],
        run,
        title=f"TM(eps) fit over {len(set(fit_list) | set(eval_list))} eps",
        kind="tm-fit",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={"source": names[0], "target": names[1]},
        command=commands.fit_tm_command(
            names[0],
            names[1],
            fit_list,
            eval_list,
            steps,
            step_size_for(top, steps),  # PGD's own default, echoed
            limit,
            home=zoo.root,
            device=device,
            profile=profile,
        ),
    )
