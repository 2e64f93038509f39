"""Training zoo models as one job: keyed by the specs (order-free), done at once when the zoo holds them all."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from trend_core.config.specs import ModelSpec
from trend_core.errors import TrendError
from trend_core.models.members import home_of
from trend_core.models.zoo import Zoo
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.jobs import Job, JobManager
from trend_core.service import commands
from trend_core.service.submit import submit_job


def training_message(step) -> str:
    """What a training job's bar says: the count of models finished (it only grows, although models training side
    by side report in turn), then the latest model's news ("FP-s0: epoch 3/20, validation accuracy 91.0%")."""
    count = f"{step.models_done}/{step.models_total} models trained"
    report = step.report
    label = step.spec.short_name
    if report is None or step.result is not None:
        accuracy = "" if step.result is None else f" (test accuracy {step.result.test_acc:.1%})"
        return f"{count}; {label} done{accuracy}"
    return f"{count}; {label}: epoch {report.epoch}/{report.epochs}, validation accuracy {report.val_acc:.1%}"


class _ZooHasAll:
    """A read-only 'store' for training jobs: the result is there once the zoo holds every spec."""

    def __init__(self, zoo, specs):
        self.zoo, self.specs = zoo, list(specs)

    def get(self, key: str, default: Any = None) -> Any:
        if all(self.zoo.has(spec) for spec in self.specs):
            return [self.zoo.metadata(spec) for spec in self.specs]
        return default

    def set(self, key: str, value: Any) -> None:  # the zoo already holds the checkpoints
        return None


def training_key(zoo: Zoo, specs: Sequence[ModelSpec]) -> str:
    """Content key of 'train these specs into this zoo' (order-free)."""
    payload = "|".join([home_of(zoo)] + sorted(spec.key for spec in specs))
    return "train-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def submit_training(
    zoo: Zoo, specs: Sequence[ModelSpec], device: str = "auto", manager: JobManager | None = None
) -> Job:
    """Train the missing ``specs`` into ``zoo`` as one heavy job on the resolved device (progress per epoch).

    The job's result is the list of the models' metadata; it is done at once when the zoo has them all.
    """
    specs = list(dict.fromkeys(specs))
    if not specs:
        raise TrendError("No models were chosen to train; pick at least one.")
    dev = resolve_device(device)
    n = len(specs)
    names = [spec.name for spec in specs]

    def run(job: Job) -> list[dict]:
        # progress counts epochs, so a 4-epoch model moves the bar a fifth of a 20-epoch one; small-image models
        # train side by side (one per core), so reports from several models interleave
        job.progress(0.0, "first epochs under way")
        zoo.train_many(
            specs,
            device=str(dev),
            progress=lambda step: job.progress(step.fraction, training_message(step)),
            cancel=job.cancel_requested,
        )
        return [zoo.metadata(spec) for spec in specs]

    return submit_job(
        zoo,
        [],
        run,
        key=training_key(zoo, specs),
        title=f"Training {n} model{'s' if n > 1 else ''}",
        kind="train",
        device=dev,
        store=_ZooHasAll(zoo, specs),
        command=commands.train_command(names, zoo.root, device),
        manager=manager,
        models=names,
    )
