"""The demo warm-up: every page's default run (``service.defaults``) computed in the background after a zoo is
built, cheapest first, so a presenter's first click on any page is served from the results store. Its runs are
background jobs: a presenter's own run goes first, and a warm-up run it interrupted is done again after it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from trend_core.errors import TrendError
from trend_core.models.members import home_of, model_identity, test_count
from trend_core.models.zoo import Zoo
from trend_core.runtime.jobs import YIELDED_MESSAGE, Job, JobManager, JobStatus, get_manager
from trend_core.service import defaults
from trend_core.service.audit import submit_audit
from trend_core.service.boundary import submit_boundary
from trend_core.service.curve import submit_tm_fit
from trend_core.service.submit import in_background
from trend_core.service.transfer import submit_transfer
from trend_core.service.vote_jobs import (
    submit_ensemble_sweep,
    submit_trend_audit,
    submit_trend_evaluation,
    submit_trend_growth,
)
from trend_core.storage.store import AnyStore, content_key

WARMUP_VERSION = "warmup/v1"
POLL_SECONDS = 0.5
PAUSED = f"{YIELDED_MESSAGE}; continues once it is done"  # the progress message while a page's run goes first


@dataclass
class DefaultRun:
    """One page's default run: the submit function the page calls, the keywords it calls it with, and the page's
    slot that shows it (``trend_ui.remember_job``; None where the page finds it by its settings alone)."""

    page: str
    submit: Callable[..., Job]
    kwargs: dict = field(default_factory=dict)
    slot: str | None = None

    def job(self, zoo: Zoo, store: AnyStore, manager: JobManager | None = None) -> Job:
        job = self.submit(zoo, store, manager=manager, **self.kwargs)
        slots = job.meta.setdefault("slots", [])
        if self.slot is not None and self.slot not in slots:  # shown by this page's slot, not another's
            slots.append(self.slot)
        return job


def default_runs(zoo: Zoo, dataset: str, device: str = "auto", profile: str = "paper") -> list[DefaultRun]:
    """The default run of every page that needs no earlier result, cheapest first (on the digits preset), the
    Transferability run before the TREND builder's (the builder opens on the newest run)."""
    metas = zoo.list(dataset)
    total = test_count(dataset)
    common, alone = dict(device=device, profile=profile), dict(device=device)  # (boundary and audit: no profile)
    found: list[tuple[str, str, Callable[..., Job], dict | None, dict]] = [
        ("Decision boundary", "boundary", submit_boundary, defaults.boundary_request(metas, dataset), alone),
        ("TM curve", "tm-fit", submit_tm_fit, defaults.curve_request(metas, dataset), common),
        (
            "Ensemble attacks",
            "ensemble-sweep",
            submit_ensemble_sweep,
            defaults.ensemble_request(metas, dataset, total),
            common,
        ),
        ("Transferability", "transfer", submit_transfer, defaults.transfer_request(metas, dataset, total), common),
        (
            "TREND builder: transfer run",
            "trend-transfer",
            submit_transfer,
            defaults.pool_request(metas, dataset),
            common,
        ),
        ("Robustness audit", "audit", submit_audit, defaults.audit_request(metas, dataset, total), alone),
    ]
    return [
        DefaultRun(page, submit, {**request, **options}, slot)
        for page, slot, submit, request, options in found
        if request
    ]


def builder_runs(pool_result: Any, zoo: Zoo, dataset: str, device: str = "auto", profile: str = "paper") -> list:
    """The TREND builder's default evaluation, growth curve, ranking and audit of its finished transfer run."""
    metas = zoo.list(dataset)
    tm, name_of, kept, _ = defaults.builder_run(pool_result, metas)
    if len(kept) < 2:
        return []
    tm = tm.loc[kept, kept]
    requests = defaults.builder_requests(tm, defaults.pool_accuracies(kept, name_of, metas), name_of, dataset)
    common = dict(device=device, profile=profile)
    return [
        DefaultRun("TREND builder: evaluate", submit_trend_evaluation, {**requests["trend-eval"], **common}),
        DefaultRun("TREND builder: growth", submit_trend_growth, {**requests["trend-growth"], **common}),
        DefaultRun("TREND builder: ranking", submit_trend_growth, {**requests["trend-rank"], **common}),
        DefaultRun("TREND builder: audit", submit_trend_audit, {**requests["trend-audit"], "device": device}),
    ]


def warm_defaults(
    zoo: Zoo,
    store: AnyStore,
    dataset: str,
    device: str = "auto",
    profile: str = "paper",
    manager: JobManager | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> list[Job]:
    """Submit every page's default run as background work, one after another (each waits for the one before: they
    share the device), and return the jobs; ``progress(fraction, message)`` counts finished runs. A run that
    yielded to a presenter's run is submitted again once the device has no presenter's run left."""
    manager = manager or get_manager()
    runs = default_runs(zoo, dataset, device, profile)
    planned = len(runs) + 4  # the builder's four runs follow its transfer run
    jobs: list[Job] = []

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(fraction, message)

    def run_one(run: DefaultRun) -> Job:
        done = len(jobs)
        while True:
            with in_background():
                job = run.job(zoo, store, manager)
            while not job.wait(POLL_SECONDS):
                report((done + job.fraction) / planned, f"{run.page}: {run_state(job, manager)}")
            if not job.yielded:
                break
            while not manager.wait_foreground_idle(job.device, POLL_SECONDS):
                report(done / planned, f"{run.page}: {PAUSED}")
        jobs.append(job)
        report(len(jobs) / planned, f"{run.page}: {job.status.value}")
        return job

    for run in runs:
        job = run_one(run)
        if run.page == "TREND builder: transfer run" and job.status is JobStatus.DONE:
            for later in builder_runs(job.result, zoo, dataset, device, profile):
                run_one(later)
    import_page_modules()
    return jobs


def run_state(job: Job, manager: JobManager) -> str:
    """What a warm-up run is doing, for the warm-up's progress: its own message, or that it waits for the
    presenter's run (queued behind it, or yielding to it)."""
    if job.yielding or (job.status is JobStatus.QUEUED and manager.foreground_active(job.device)):
        return PAUSED
    return job.message


def import_page_modules() -> None:
    """Import the modules the pages draw their figures with (plotly: about half a second), so that the first
    view of each page after the warm-up does not wait for them."""
    # local: the figures' modules, imported here on purpose (the point of this function)
    import trend_core.plots.audit
    import trend_core.plots.boundary
    import trend_core.plots.curve
    import trend_core.plots.ensemble
    import trend_core.plots.transfer
    import trend_core.plots.zoo  # noqa: F401


def submit_warmup(
    zoo: Zoo,
    store: AnyStore,
    dataset: str,
    device: str = "auto",
    profile: str = "paper",
    after: Job | None = None,
    manager: JobManager | None = None,
) -> Job:
    """``warm_defaults`` as a light job (it only waits on the heavy runs it submits), started once ``after`` (the
    zoo's training job) has finished. Its result: ``done`` (job key -> title of each finished run) and ``failed``
    (one sentence per run that did not finish: the page says the same when its button is pressed)."""
    manager = manager or get_manager()
    origin = after.key if after is not None else model_identity(zoo, defaults.picker_names(zoo.list(dataset)))
    key = content_key(WARMUP_VERSION, home_of(zoo), dataset, profile, origin)

    def run(job: Job) -> dict:
        if after is not None:
            while not after.wait(POLL_SECONDS):
                job.progress(0.0, "waiting for the zoo to be trained")
            if after.status is not JobStatus.DONE:
                raise TrendError("The zoo was not built, so no page's default run was computed.")
        jobs = warm_defaults(zoo, store, dataset, device, profile, manager, progress=job.progress)
        return {
            "done": {j.key: j.title for j in jobs if j.status is JobStatus.DONE},
            "failed": [f"{j.title}: {j.error or j.status.value}" for j in jobs if j.status is not JobStatus.DONE],
        }

    return manager.submit(
        key,
        run,
        title=f"Every page's default run on the {dataset} zoo",
        kind="warmup",
        meta={"home": home_of(zoo), "dataset": dataset},
    )
