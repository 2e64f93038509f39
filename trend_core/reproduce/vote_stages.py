"""The paper's ensemble stages of `trend reproduce`: the four ensemble attacks over eps with gradient domination
(Figs. 5-7), and TREND ensembles against their members and as they grow (Figs. 8-9)."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pandas as pd

from trend_core.attacks.base import attack_mode
from trend_core.attacks.ensemble_pgd import RULE_NAMES, EnsemblePGD, agreement_trace, member_gradients
from trend_core.ensemble.selection import ENSEMBLE_LABEL, growing_ensembles, select_ensembles
from trend_core.experiments.ensemble_sweep import robustness_ratios, robustness_sweep
from trend_core.experiments.vote_robustness import agd_evaluation, growth_curve
from trend_core.nn.vote import MajorityVote
from trend_core.reproduce.stages import DONE, PAPER_ENSEMBLES, StageContext, not_run, tm_matrix


# ----------------------------------------------------------------------------- 5. ensemble attacks (Figs. 5-7)
def image_frame(outcomes: dict) -> pd.DataFrame:
    """A robustness sweep's per-image outcomes as columns ``clean:<model>`` and ``<rule>@<eps>:<model>``."""
    return pd.DataFrame({(f"clean:{m}" if r == "clean" else f"{r}@{e:g}:{m}"): v for (r, e, m), v in outcomes.items()})


def _vote(ctx: StageContext, roles):
    return MajorityVote([ctx.model(r) for r in roles], seed=ctx.settings.seed, names=[ctx.label(r) for r in roles])


def ensemble_attacks(ctx: StageContext) -> dict:
    """D-AG, EMPIR, U-GD and A-GD over eps on FP+Q1+Q2 and FP+Q1+Q2+HT, and gradient domination on the first."""
    sets = [roles for roles in PAPER_ENSEMBLES if all(r in ctx.settings.models for r in roles)]
    if not sets:
        return not_run("needs the models FP, Q1 and Q2")
    s = ctx.settings
    eps = list(s.ensemble_eps)
    frames, images = [], {}
    for i, roles in enumerate(sets):
        ctx.check()
        name = "+".join(roles)
        ctx.progress(i / (len(sets) + 1), f"four ensemble attacks on {name}")
        outcomes: dict = {}
        sweep = robustness_sweep(
            _vote(ctx, roles),
            eps,
            rules=RULE_NAMES,
            data=ctx.data(),
            steps=s.ensemble_steps,
            seed=s.seed,
            members_alone=False,
            cache=ctx.store,
            device=ctx.device,
            profile=s.profile,
            outcomes=outcomes,
        )
        images[name] = image_frame(outcomes)
        rows = sweep[sweep["model"] == ENSEMBLE_LABEL].drop(columns=["model", "acc_on_ensemble_adv"])
        frames.append(rows.assign(ensemble=name, size=len(roles)))
    ctx.check()
    ctx.progress(len(sets) / (len(sets) + 1), "gradient domination")
    domination = gradient_domination(ctx, sets[0], min(eps))
    return {"status": DONE, "sweep": pd.concat(frames, ignore_index=True), "images": images, **domination}


def gradient_domination(ctx: StageContext, roles, eps: float) -> dict:
    """Per member: mean input-gradient L2 norm over the first images, and how often D-AG's and A-GD's step
    direction agreed with its gradient sign (one member dominating D-AG shows as one high agreement)."""
    s = ctx.settings
    x, y = ctx.data()
    x, y = x[: s.agreement_images].to(ctx.device), y[: s.agreement_images].to(ctx.device)
    vote = _vote(ctx, roles)
    with contextlib.ExitStack() as stack:
        for member in vote.members:
            stack.enter_context(attack_mode(member))
        grads, _ = member_gradients(list(vote.members), x.clone(), y)
    norms = grads.flatten(2).norm(dim=2).mean(dim=1).cpu()
    frames = []
    for rule in ("dag", "agd"):
        attack = EnsemblePGD(rule, eps, steps=s.ensemble_steps, seed=s.seed)
        trace = agreement_trace(attack, vote, x, y)
        frames.append(trace.groupby("member", sort=False, as_index=False)["agreement"].mean().assign(rule=rule))
    agreement = pd.concat(frames, ignore_index=True)
    gradients = pd.DataFrame({"member": vote.names, "mean_grad_l2": [float(v) for v in norms]})
    return {
        "agreement": agreement,
        "gradients": gradients,
        "domination_ensemble": "+".join(roles),
        "domination_eps": float(eps),
    }


# ----------------------------------------------------------------------------- 6. TREND (Figs. 8-9)
def trend(ctx: StageContext) -> dict:
    """TREND ensembles chosen from the measured PGD matrix (FP required, as in the paper's FP-Q1-Q2) against
    each member alone under A-GD, and robustness as the ensemble grows."""
    m = ctx.results.get("matrices", {})
    if m.get("status") != DONE or len(m["labels"]) < 3:
        return not_run("needs the TM matrix of at least three models")
    s = ctx.settings
    tm = tm_matrix(m["pairs"], m["labels"])
    role_of = m["roles"]
    fp = ctx.label("FP")
    chosen, comparisons, images = [], [], {}
    attack: dict[str, Any] = dict(
        data=ctx.data(), seed=s.seed, cache=ctx.store, device=ctx.device, profile=s.profile
    )  # A-GD's
    sizes = [k for k in (3, 4) if k <= len(m["labels"])]
    for i, k in enumerate(sizes):
        ctx.check()
        best = select_ensembles(tm, k, require=[fp], top=1).iloc[0]
        members = list(best["members"])
        chosen.append(
            {
                "size": k,
                "ensemble": " + ".join(members),
                "score": float(best["score"]),
                "max_pair_tm": float(best["max_pair_tm"]),
            }
        )
        ctx.progress(i / (len(sizes) + 1), f"A-GD on {' + '.join(members)} and each member")
        vote = _vote(ctx, [role_of[x] for x in members])
        sweep, images[" + ".join(members)] = agd_evaluation(vote, s.trend_eps, s.ensemble_steps, **attack)
        ratios = robustness_ratios(sweep)
        ens = sweep[sweep["model"] == ENSEMBLE_LABEL].iloc[0]
        comparisons.append(
            pd.DataFrame(
                [
                    {
                        "ensemble": " + ".join(members),
                        "model": "ensemble",
                        "clean_accuracy": float(ens["clean_accuracy"]),
                        "accuracy": float(ens["accuracy"]),
                        "times_more_robust": math.nan,
                    }
                ]
                + [
                    {
                        "ensemble": " + ".join(members),
                        "model": r.member,
                        "clean_accuracy": float(sweep.loc[sweep["model"] == r.member, "clean_accuracy"].iloc[0]),
                        "accuracy": r.member_accuracy,
                        "times_more_robust": r.times_more_robust,
                    }
                    for r in ratios.itertuples(index=False)
                ]
            )
        )
    ctx.check()
    ctx.progress(len(sizes) / (len(sizes) + 1), "robustness as the ensemble grows")
    sets = growing_ensembles(tm, min(6, len(m["labels"])), fp)
    growth = growth_curve(
        [_vote(ctx, [role_of[x] for x in members]) for members in sets],
        s.trend_eps,
        s.ensemble_steps,
        starting=lambda i, vote: ctx.check(),
        **attack,
    )
    return {
        "status": DONE,
        "chosen": pd.DataFrame(chosen),
        "comparison": pd.concat(comparisons, ignore_index=True),
        "growth": growth.drop(columns=["ci_low", "ci_high"]),
        "eps": s.trend_eps,
        "images": images,
    }
