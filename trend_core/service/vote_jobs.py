"""Majority-vote jobs: the four ensemble attacks over eps (with the members' gradient agreement), TREND's
A-GD evaluation against each member, its growth curve or robustness ranking, and its quick audit."""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import torch

from trend_core.attacks.base import check_int
from trend_core.attacks.ensemble_pgd import (
    RULE_LABELS,
    RULE_NAMES,
    EnsemblePGD,
    GradientViews,
    agreement_trace,
    gradient_views,
)
from trend_core.attacks.pgd import step_size_for
from trend_core.config.profiles import check_profile
from trend_core.ensemble.selection import ENSEMBLE_LABEL
from trend_core.ensemble.verdict import member_verdict
from trend_core.errors import TrendError
from trend_core.experiments.attack_cache import attack_cached
from trend_core.experiments.audit import audit_ensemble_and_members
from trend_core.experiments.ensemble_sweep import robustness_ratios, robustness_sweep
from trend_core.experiments.eval_data import evaluation_data
from trend_core.experiments.parallel_sources import prefetch_in_workers
from trend_core.experiments.transfer_keys import CACHE_VERSION, attack_keys
from trend_core.experiments.vote_robustness import agd_evaluation, growth_curve
from trend_core.models.members import (
    check_members,
    load_members,
    model_dataset,
    model_identity,
    test_images,
    zoo_labels,
)
from trend_core.models.zoo import Zoo
from trend_core.nn.vote import MajorityVote
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.jobs import Job, JobManager
from trend_core.runtime.progress import WorkMeter, no_progress
from trend_core.service import commands
from trend_core.service.checks import check_epsilons, check_limit
from trend_core.service.submit import submit_job
from trend_core.storage.store import AnyStore, MemoryStore, content_key, model_fingerprint

AGREEMENT_IMAGES = 32  # images the per-member agreement is averaged over (a fraction of pixels: steady already)
TREND_VERSION = "trend/v2"  # TREND builder jobs: zoo-wide labels and per-image results (with intervals)


def _agd_commands(sets: Sequence[Sequence[str]], eps: float, steps: int, limit, zoo: Zoo, **options) -> str:
    """The `trend ensemble-attack` lines (A-GD at ``eps``) that evaluate each ensemble in ``sets``."""
    return "\n".join(
        commands.ensemble_attack_command(
            s, [eps], ["agd"], steps, step_size_for(eps, steps), limit, home=zoo.root, **options
        )
        for s in sets
    )


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
    rule's step direction had the member's gradient sign, averaged over the steps and images of the sweep's own
    attack; when that attack comes from the store, over a trace on the first ``agreement_images`` images).
    """
    names = check_members(zoo, members, 2, "ensemble member")
    eps_list = check_epsilons(epsilons)
    steps = check_int("Attack steps", steps)
    limit = check_limit(limit)
    agreement_images = check_int("Agreement images", agreement_images)
    step_size = step_size_for(eps_list[-1], steps)  # one step size at every eps, as `trend ensemble-attack`
    dev = resolve_device(device)
    profile = check_profile(profile)

    def run(job: Job) -> dict:
        ensemble = MajorityVote(load_members(zoo, names, dev, job), profile=profile)
        x, y = evaluation_data(list(ensemble.members), None, "test", limit)
        x, y = x.to(dev), y.to(dev)
        cache = store if store is not None else MemoryStore()  # the sweep reads the attack recorded below
        # small images on the CPU: the attacks run one per core first, each recording its agreement (as below)
        traces: dict[str, torch.Tensor] = {}
        points = [
            (ensemble, EnsemblePGD(rule, eps_list[0], steps=steps, step_size=step_size, profile=profile))
            for rule in RULE_NAMES
        ]
        prefetched = prefetch_in_workers(points, x, y, eps_list, cache, dev, None, job.progress, traces)
        work = WorkMeter(no_progress if prefetched else job.progress, len(RULE_NAMES) * len(eps_list))
        data_key, fingerprint = content_key(CACHE_VERSION, "data", x, y), model_fingerprint(ensemble)
        sweeps, frames = [], []
        for rule in RULE_NAMES:
            for eps in eps_list:
                work.start(f"{RULE_LABELS[rule]} at eps {eps:g}: attacking the ensemble")
                steps_seen: list = []  # the agreement of each step, recorded by the sweep's own attack
                attack = EnsemblePGD(
                    rule,
                    eps,
                    steps=steps,
                    step_size=step_size,
                    profile=profile,
                    on_step=_recorder(steps_seen),
                )
                attack_cached(ensemble, attack, x, y, [eps], cache, data_key, fingerprint)
                recorded = traces.get(attack_keys(attack, [eps], data_key, fingerprint)[0])
                if recorded is not None or steps_seen:
                    mean = recorded if recorded is not None else torch.stack(steps_seen).float().mean(dim=0)
                    trace = pd.DataFrame({"member": ensemble.names, "agreement": mean.tolist()})
                else:  # the attack came from the store: trace it again on the first images
                    trace = agreement_trace(
                        EnsemblePGD(rule, eps, steps=steps, step_size=step_size, profile=profile),
                        ensemble,
                        x[:agreement_images],
                        y[:agreement_images],
                        speedup=True,
                    )
                    trace = trace.groupby("member", sort=False, as_index=False)["agreement"].mean()
                frames.append(trace.assign(rule=rule, eps=eps))
                sweeps.append(
                    robustness_sweep(
                        ensemble,
                        [eps],
                        rules=[rule],
                        limit=limit,
                        steps=steps,
                        step_size=step_size,
                        members_alone=False,
                        cache=cache,
                        device=dev,
                        profile=profile,
                    )
                )
                work.done(1)
        sweep = pd.concat(sweeps, ignore_index=True)
        agreement = pd.concat(frames, ignore_index=True)[["rule", "eps", "member", "agreement"]]
        return {"sweep": sweep, "agreement": agreement}

    return submit_job(
        zoo,
        [model_identity(zoo, names), eps_list, steps, limit, agreement_images, profile],
        run,
        title=f"Ensemble attacks on {len(names)} members ({len(eps_list)} eps)",
        kind="ensemble-sweep",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={"members": names},
        command=commands.ensemble_attack_command(
            names, eps_list, ["all"], steps, step_size, limit, home=zoo.root, device=device, profile=profile
        ),
    )


def _recorder(seen: list) -> Callable[[int, torch.Tensor], None]:
    """An attack's ``on_step`` that keeps each step's agreement in ``seen``."""

    def record(step: int, agreement: torch.Tensor) -> None:
        seen.append(agreement)

    return record


def gradient_views_of(zoo: Zoo, members: Sequence[str], index: int, device: str = "auto") -> GradientViews:
    """``gradient_views`` of the majority vote of ``members`` at test image ``index`` (one image: no job needed)."""
    names = check_members(zoo, members, 2, "ensemble member")
    index = check_int("The image index", index, 0)
    x, y = test_images(model_dataset(names[0]), index + 1)
    if index >= len(x):
        raise TrendError(f"The test split has {len(x)} images; pick an index below {len(x)}.")
    ensemble = MajorityVote(load_members(zoo, names, resolve_device(device)))
    return gradient_views(ensemble, x[index], int(y[index]))


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
    limit = check_limit(limit)
    dev = resolve_device(device)
    profile = check_profile(profile)
    labels = zoo_labels(zoo, names)

    def run(job: Job) -> dict:
        ensemble = MajorityVote(load_members(zoo, names, dev, job), profile=profile)
        sweep, per_image = agd_evaluation(  # progress weighed by gradients: the ensemble's N, each member's 1
            ensemble,
            eps,
            steps,
            limit=limit,
            cache=store,
            device=dev,
            progress=job.progress,
            cancel=job.cancel_requested,
            profile=profile,
        )
        setting = f"Under A-GD at eps {eps:g} ({steps} steps)"
        return {
            "sweep": sweep,
            "ratios": robustness_ratios(sweep),
            "per_image": per_image,
            **member_verdict(per_image, setting),
        }

    return submit_job(
        zoo,
        [TREND_VERSION, model_identity(zoo, names), [labels[n] for n in names], eps, steps, limit, profile],
        run,
        title=f"A-GD at eps {eps:g} on {' + '.join(labels[n] for n in names)}",
        kind="trend-eval",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={"members": names},
        command=_agd_commands([names], eps, steps, limit, zoo, members_alone=True, device=device, profile=profile),
    )


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
    low-TM ranking beside a ranking by what the vote withstands. Result: ``growth_curve``'s DataFrame (size,
    members as labels joined by " + ", clean_accuracy, accuracy, ci_low / ci_high, eps), one row per ensemble.
    """
    if purpose not in ("growth", "ranking"):
        raise TrendError(f"purpose is 'growth' or 'ranking', not {purpose!r}.")
    kind = "trend-growth" if purpose == "growth" else "trend-rank"
    sets = [check_members(zoo, members, 1) for members in ensembles]
    if not sets:
        raise TrendError("Give at least one ensemble to evaluate.")
    (eps,) = check_epsilons([eps])
    steps = check_int("Attack steps", steps)
    limit = check_limit(limit)
    dev = resolve_device(device)
    names = list(dict.fromkeys(n for members in sets for n in members))
    profile = check_profile(profile)
    labels = zoo_labels(zoo, names)

    def run(job: Job) -> pd.DataFrame:
        loaded = dict(zip(names, load_members(zoo, names, dev, job)))
        votes = [
            MajorityVote([loaded[n] for n in members], names=[labels[n] for n in members], profile=profile)
            for members in sets
        ]
        work = WorkMeter(job.progress, sum(len(members) for members in sets))  # an attack costs one gradient a member

        def starting(i: int, vote: MajorityVote) -> None:
            if i:
                work.done(len(sets[i - 1]))
            work.start(f"A-GD on {' + '.join(vote.names)} ({i + 1}/{len(sets)} ensembles)")

        frame = growth_curve(
            votes, eps, steps, limit=limit, cache=store, device=dev, profile=profile, starting=starting
        )
        work.done(len(sets[-1]))
        return frame

    what = "growing ensembles" if purpose == "growth" else "candidate ensembles"
    return submit_job(
        zoo,
        [TREND_VERSION, [model_identity(zoo, s) for s in sets], [labels[n] for n in names], eps, steps, limit, profile],
        run,
        title=f"A-GD at eps {eps:g} on {len(sets)} {what}",
        kind=kind,
        device=dev,
        store=store,
        manager=manager,
        meta={"ensembles": [list(s) for s in sets]},
        command=_agd_commands(sets, eps, steps, limit, zoo, device=device, profile=profile),
        models=[name for s in sets for name in s],
    )


def submit_trend_audit(
    zoo: Zoo,
    store: AnyStore,
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
    limit = check_limit(limit)
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
            cancel=job.cancel_requested,
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

    return submit_job(
        zoo,
        [TREND_VERSION, model_identity(zoo, names), labels, eps, limit],
        run,
        title=f"Audit of {' + '.join(labels)} and its members at eps {eps:g}",
        kind="trend-audit",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={"members": names},
        command="\n".join(
            commands.audit_command(ms, [eps], len(ms) > 1, "quick", limit, home=zoo.root, device=device)
            for ms in [names, *([n] for n in names)]
        ),
    )
