"""Running a reproduction: train the missing models, run each stage (or read it from the store), judge the
findings; and the same as a background job for the dashboard.

Each stage's result is stored under a key of (stage, settings, the models' identities), so a run interrupted
after some stages continues at the next one, and a finished run is read back in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError
from trend_core.models.checkpoints import library_versions
from trend_core.models.members import home_of
from trend_core.models.zoo import Zoo
from trend_core.reproduce.findings import evaluate_findings
from trend_core.reproduce.report import write_outputs
from trend_core.reproduce.settings import ReproSettings, settings_for
from trend_core.reproduce.stage_list import STAGES
from trend_core.reproduce.stages import ReproduceCancelled, StageContext, check_stage_result
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.jobs import Job, JobCancelled, device_lane, get_manager
from trend_core.runtime.progress import Progress, no_progress
from trend_core.storage.store import content_key, get_store
from trend_core.training.train import TrainingCancelled

if TYPE_CHECKING:
    import torch

VERSION = "reproduce/v2"  # v2: stages keep per-image outcomes for the verdicts' intervals


def _identity(zoo, names) -> list:
    return [(n, ModelSpec.parse(n).key, zoo.metadata(n).get("created")) for n in names]


def stage_key(settings: ReproSettings, name: str, identity: list) -> str:
    """Where a stage's result lives in the store."""
    # the audit's key once also said whether the audit module existed; it always does now, and the constant
    # keeps the keys of audits already stored
    extra = [True] if name == "audit" else []
    return content_key(VERSION, name, settings.to_dict(), identity, *extra)


# Relative cost of each part of a reproduction (seconds of the quick digits run on an idle 2-core CPU), so the
# bar moves in proportion to the work: the audit alone is about half of it.
STAGE_COST = {
    "baseline": 1.0,
    "attacks": 60.0,
    "matrices": 40.0,
    "boundary": 3.0,
    "ensembles": 50.0,
    "trend": 30.0,
    "fit": 25.0,
    "audit": 260.0,
}
TRAIN_COST_PER_MODEL = 9.0
STORED_COST = 0.5  # a stage read back from the store


def progress_spans(settings: ReproSettings, zoo, store) -> dict[str, tuple[float, float]]:
    """The share of the progress bar each part of the run takes, as (start, end) fractions: training the
    missing models, then each stage by its cost (a stage already in the store costs next to nothing)."""
    missing = [n for n in settings.models.values() if not zoo.has(n)]
    identity = None if missing else _identity(zoo, list(settings.models.values()))
    costs = {"training": TRAIN_COST_PER_MODEL * len(missing)}
    for name in STAGES:
        stored = identity is not None and store.has(stage_key(settings, name, identity))
        costs[name] = STORED_COST if stored else STAGE_COST.get(name, 10.0)
    total, spans, done = sum(costs.values()), {}, 0.0
    for part, cost in costs.items():
        spans[part] = (done / total, (done + cost) / total)
        done += cost
    return spans


def train_missing(settings: ReproSettings, zoo, device, progress: Progress, cancel) -> float:
    """Train every model the run needs and the zoo lacks; returns the seconds spent."""
    missing = [ModelSpec.parse(n) for n in settings.models.values() if not zoo.has(n)]
    start = time.time()
    if missing:
        progress(0.0, f"training {len(missing)} model{'s' if len(missing) > 1 else ''}")
    try:
        zoo.train_many(
            missing,
            device=device,
            progress=lambda step: progress(step.fraction, f"training models: {step.message}"),
            cancel=cancel,
        )
    except TrainingCancelled:
        raise ReproduceCancelled("The reproduction was cancelled while training; trained models are kept.") from None
    return time.time() - start


def run_reproduce(
    settings: ReproSettings,
    zoo=None,
    store=None,
    device: str | torch.device = "auto",
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict:
    """Every stage of the reproduction and the eight findings, as one report dict (settings, run, stages,
    findings). ``progress(fraction, message)`` follows the run; ``cancel()`` returning True stops it
    (ReproduceCancelled) with the finished stages kept in the store."""
    if not isinstance(settings, ReproSettings):
        raise TrendError("run_reproduce needs ReproSettings (see settings_for).")
    started = time.time()
    zoo = zoo if zoo is not None else Zoo()
    store = store if store is not None else get_store(zoo.root)
    dev = resolve_device(device)
    report_progress = progress or no_progress
    total = len(STAGES)

    def check() -> None:
        if cancel is not None and cancel():
            raise ReproduceCancelled("The reproduction was cancelled; finished work is kept in the store.")

    check()
    spans = progress_spans(settings, zoo, store)
    train_seconds = train_missing(
        settings, zoo, dev, lambda f, m: report_progress(spans["training"][1] * min(max(f or 0.0, 0.0), 1.0), m), cancel
    )
    identity = _identity(zoo, list(settings.models.values()))
    ctx = StageContext(settings, zoo, store, dev, cancel=cancel)
    stages, from_store = {}, []
    for i, (name, (title, fn)) in enumerate(STAGES.items(), start=1):
        check()
        key = stage_key(settings, name, identity)
        result = store.get(key)
        start, end = spans[name]
        if result is not None:
            from_store.append(name)
            report_progress(end, f"{title}: read from the store")
        else:

            def stage_progress(
                f: float | None, m: str | None, i: int = i, title: str = title, start: float = start, end: float = end
            ) -> None:
                report_progress(
                    start + (end - start) * min(max(f or 0.0, 0.0), 1.0), f"stage {i}/{total}, {title}: {m}"
                )

            ctx.progress = stage_progress
            ctx.progress(0.0, "starting")
            begun = time.time()
            try:
                result = check_stage_result(name, fn(ctx))
            except TrendError as exc:  # the data do not allow this experiment (e.g. no adversarial image at all)
                result = {"status": f"not run: {exc}"}
            result["seconds"] = round(time.time() - begun, 3)
            store.set(key, result)
        stages[name] = ctx.results[name] = result
    report_progress(1.0, "judging the findings")
    versions = {k: str(v) for k, v in library_versions().items()}  # torch's is a str subclass the store refuses
    run = {
        "device": str(dev),
        "versions": versions,
        "wall_seconds": round(time.time() - started, 3),
        "train_seconds": round(train_seconds, 3),
        "compute_seconds": round(train_seconds + sum(float(s.get("seconds") or 0) for s in stages.values()), 3),
        "from_store": from_store,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "notes": [],
        "store": str(Path(zoo.root).expanduser()),
    }
    return {
        "settings": settings.to_dict(),
        "run": run,
        "stages": stages,
        "findings": evaluate_findings(stages, dataset=settings.dataset),
    }


# ----------------------------------------------------------------------------- as a dashboard job
def default_out_dir(zoo, settings: ReproSettings) -> Path:
    """Where the dashboard's runs write their files: ``<store>/reproduce/<dataset>-<scale>-<profile>``."""
    return Path(zoo.root).expanduser() / "reproduce" / f"{settings.dataset}-{settings.scale}-{settings.profile}"


def job_key(zoo, settings: ReproSettings) -> str:
    return content_key(VERSION, "job", home_of(zoo), settings.to_dict())


def submit_reproduce(
    zoo,
    store,
    dataset: str = "digits",
    scale: str = "quick",
    profile: str = "paper",
    device: str = "auto",
    rerun: bool = False,
    manager=None,
    **overrides,
):
    """The reproduction as one heavy background job (per-stage progress, cancellable); its result is the report,
    kept in the store so a restarted server shows it at once. ``rerun`` drops a stored report first (stages
    whose models and settings did not change still come from the store)."""
    settings = settings_for(dataset, scale, profile, **overrides)
    dev = resolve_device(device)
    key = job_key(zoo, settings)
    manager = manager or get_manager()
    if rerun:
        live = manager.get(key)
        if live is None or live.finished:
            store.delete(key)
            manager.forget(key)

    def run(job: Job) -> dict:
        try:
            report = run_reproduce(settings, zoo, store, dev, progress=job.progress, cancel=job.cancel_requested)
        except ReproduceCancelled:
            raise JobCancelled("cancelled") from None

        write_outputs(report, default_out_dir(zoo, settings))
        return report

    return manager.submit(
        key,
        run,
        title=f"Reproduction on {dataset} ({scale}, {profile} profile)",
        kind="reproduce",
        device=device_lane(dev),
        store=store,
        log_dir=Path(zoo.root) / "logs",
        meta={"home": home_of(zoo), "dataset": dataset, "scale": scale, "profile": profile},
    )


def stored_reproduction(zoo, store, dataset: str, scale: str, profile: str = "paper", manager=None):
    """The job of this reproduction if the server knows it or its report is in the store (after a restart)."""
    settings = settings_for(dataset, scale, profile)
    return (manager or get_manager()).get(job_key(zoo, settings), store=store)
