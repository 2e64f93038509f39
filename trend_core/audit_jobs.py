"""The robustness audit as a background job for the dashboard (the Audit page and the TREND builder).

``submit_audit`` checks its input first (one TrendError sentence), keys the job by content (store folder, the
models' identities, every setting) and returns the Job; the result is plain data the results store keeps:
``robust`` and ``worst_case`` DataFrames, ``flags`` (list of dicts: name, fired, sentence) and ``meta``.
"""
from __future__ import annotations

from collections.abc import Sequence

from .analysis_jobs import _check_limit, _submit, check_epsilons, check_members, model_identity
from .errors import TrendError
from .jobs import Job, JobManager


def submit_audit(zoo, store, names: Sequence[str], epsilons: Sequence[float], ensemble: bool,
                 level: str = "quick", limit: int | None = 100, device: str = "auto",
                 manager: JobManager | None = None) -> Job:
    """Run ``run_audit`` on one model or the majority vote of ``names`` as a job (see trend_core.audit)."""
    from .audit import LEVELS
    from .devices import resolve_device

    names = check_members(zoo, names, 2 if ensemble else 1, "ensemble member" if ensemble else "model")
    if not ensemble and len(names) != 1:
        raise TrendError("Pick one model to audit, or audit the majority vote of several.")
    eps_list = check_epsilons(epsilons)
    if level not in LEVELS:
        raise TrendError(f"The audit level is 'quick' or 'thorough', got {level!r}.")
    limit = _check_limit(limit)
    dev = resolve_device(device)

    def run(job: Job) -> dict:
        from .audit import run_audit

        report = run_audit(zoo, names, ensemble=ensemble, epsilons=eps_list, level=level, limit=limit,
                           device=str(dev), store=store, progress=lambda f, m: job.progress(f, m))
        return {"robust": report.robust, "worst_case": report.worst_case,
                "flags": [{"name": f.name, "fired": f.fired, "sentence": f.sentence} for f in report.flags],
                "meta": {"models": report.models, "ensemble": report.ensemble, "level": report.level,
                         "n_images": report.n_images, "clean_accuracy": report.clean_accuracy,
                         "notes": list(report.notes)}}

    what = f"the vote of {len(names)} models" if ensemble else "one model"
    return _submit(zoo, [model_identity(zoo, names), eps_list, bool(ensemble), level, limit], run,
                   title=f"Audit ({level}) of {what} at eps {', '.join(f'{e:g}' for e in eps_list)}", kind="audit",
                   device=dev, store=store, meta={"models": names, "ensemble": bool(ensemble)}, manager=manager,
                   models=names)


def submit_trend_audit(zoo, store, members: Sequence[str], eps: float, limit: int | None = 100,
                       device: str = "auto", manager: JobManager | None = None) -> Job:
    """The quick audit of a TREND ensemble and of each member alone at ``eps`` (the TREND builder's check).

    Result: ``summary`` (model, eps, clean_accuracy, agd_accuracy, worst_case_accuracy, flags) and ``flags``
    (list of dicts: model, name, fired, sentence).
    """
    from .devices import resolve_device

    names = check_members(zoo, members, 2, "ensemble member")
    (eps,) = check_epsilons([eps])
    limit = _check_limit(limit)
    dev = resolve_device(device)

    def run(job: Job) -> dict:
        from .audit import audit_ensemble_and_members

        summary, flags = audit_ensemble_and_members(zoo, names, eps, limit=limit, device=str(dev), store=store,
                                                    progress=lambda f, m: job.progress(f, m))
        return {"summary": summary, "flags": [{"model": model, "name": f.name, "fired": f.fired,
                                               "sentence": f.sentence} for model, fs in flags.items() for f in fs]}

    return _submit(zoo, [model_identity(zoo, names), eps, limit], run,
                   title=f"Audit of a {len(names)}-member ensemble and its members at eps {eps:g}",
                   kind="trend-audit", device=dev, store=store, meta={"members": names}, manager=manager,
                   models=names)
