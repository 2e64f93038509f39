"""Robustness audits as jobs: one model or the majority vote of several under the audit's attacks."""

from __future__ import annotations

from typing import Sequence

from trend_core.errors import TrendError
from trend_core.experiments.audit import check_level, run_audit
from trend_core.models.members import check_members, model_identity
from trend_core.models.zoo import Zoo
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.jobs import Job, JobManager
from trend_core.service import commands
from trend_core.service.checks import check_epsilons, check_limit
from trend_core.service.submit import submit_job
from trend_core.storage.store import AnyStore


def submit_audit(
    zoo: Zoo,
    store: AnyStore,
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
    limit = check_limit(limit)
    dev = resolve_device(device)

    def run(job: Job) -> dict:
        report = run_audit(
            names,
            zoo=zoo,
            ensemble=ensemble,
            epsilons=eps_list,
            level=level,
            limit=limit,
            device=str(dev),
            cache=store,
            progress=job.progress,
            cancel=job.cancel_requested,
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
    return submit_job(
        zoo,
        [model_identity(zoo, names), eps_list, bool(ensemble), level, limit],
        run,
        title=f"Audit ({level}) of {what} at eps {', '.join(f'{e:g}' for e in eps_list)}",
        kind="audit",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={"models": names, "ensemble": bool(ensemble)},
        command=commands.audit_command(names, eps_list, bool(ensemble), level, limit, home=zoo.root, device=device),
    )
