"""Training several models: small-image models on the CPU train side by side, one per core.

A digits model's ops take microseconds, so one model cannot use two cores (``threads.training_threads`` gives it
one thread); two models trained at once, each on one thread, can. Each model still gets exactly the weights it
gets when trained alone: its initial weights are drawn under a lock from its own seed, the data order and
augmentation come from its own generator, and models whose training draws from torch's global generator
(an active dropout layer) are never trained side by side. Everything else trains one model at a time.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

from trend_core.config.datasets import get_info
from trend_core.config.specs import ModelSpec
from trend_core.data.datasets import load_dataset
from trend_core.errors import TrendError
from trend_core.nn.build import build_model
from trend_core.runtime.devices import resolve_device
from trend_core.training.threads import cpu_threads, training_threads
from trend_core.training.train import (
    EpochReport,
    TrainingCancelled,
    TrainingFailed,
    TrainResult,
    train_loop,
)


@dataclass(frozen=True)
class ManyProgress:
    """An epoch finished somewhere in ``train_models`` (or, with ``result``, a whole model, just saved; on a
    distributed executor only whole models are reported, with neither report nor result): which model, its epoch
    report, and the run's count of epochs and models (the fraction: epochs done over all)."""

    spec: ModelSpec
    position: int  # 1-based place of ``spec`` among the models to train
    report: EpochReport | None
    epochs_done: int
    epochs_total: int
    models_done: int
    models_total: int
    result: TrainResult | None = None  # set once the model is trained and handed to on_trained

    @property
    def fraction(self) -> float:
        return self.epochs_done / max(1, self.epochs_total)

    @property
    def message(self) -> str:
        r = self.report
        if r is None or self.result is not None:
            accuracy = "" if self.result is None else f": test accuracy {self.result.test_acc:.1%}"
            return (
                f"{self.spec.short_name} ({self.position}/{self.models_total}) trained{accuracy} "
                f"({self.models_done}/{self.models_total} models done)"
            )
        return (
            f"{self.spec.short_name} ({self.position}/{self.models_total}): epoch {r.epoch}/{r.epochs}, "
            f"validation accuracy {r.val_acc:.1%}"
        )


CORES_ENV = "TREND_CORES"  # how many CPU cores the engine's worker processes may use (a shared machine's share)


def available_cores() -> int:
    """The CPU cores this process may use: $TREND_CORES when set, else those it may run on."""
    wanted = os.environ.get(CORES_ENV, "").strip()
    if wanted:
        try:
            return max(1, int(wanted))
        except ValueError:
            raise TrendError(f"{CORES_ENV} must be a whole number of cores, got {wanted!r}.") from None
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def draws_global_randomness(model: nn.Module) -> bool:
    """Whether training ``model`` draws from torch's global generator (dropout with p > 0 does)."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


def side_by_side(specs: Sequence[ModelSpec], device: torch.device) -> int:
    """How many of ``specs`` to train at once: one per core when all train on one CPU thread and none uses the
    global generator, else 1."""
    if len(specs) < 2 or available_cores() < 2:
        return 1
    for spec in specs:
        info = get_info(spec.dataset)
        if training_threads(info, device) != 1 or draws_global_randomness(build_model(spec, info)):
            return 1
    return min(len(specs), available_cores())


def train_models(
    specs: Sequence[ModelSpec],
    on_trained: Callable[[ModelSpec, TrainResult], None],
    device: str | torch.device = "auto",
    progress: Callable[[ManyProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    workers: int | None = None,
) -> None:
    """Train each of ``specs`` from its seed and hand each result to ``on_trained`` as soon as it is done (a
    model finished before a cancel or a failure elsewhere is kept). ``workers``: models trained at once (default
    ``side_by_side``). Raises the first failure (TrainingCancelled on cancel) after the others have stopped; a
    model that ends at chance (TrainingFailed) stops nothing else and is raised once the others are trained."""
    specs = list(dict.fromkeys(specs))
    dev = resolve_device(device)
    workers = workers or side_by_side(specs, dev)
    total = sum(s.epochs or 1 for s in specs)
    lock = threading.Lock()
    counts = {"epochs": 0, "models": 0}
    failed = threading.Event()

    def stop() -> bool:
        return failed.is_set() or (cancel is not None and bool(cancel()))

    def train_one(position: int, spec: ModelSpec) -> None:
        def on_epoch(report: EpochReport) -> None:
            with lock:
                counts["epochs"] += 1
                step = ManyProgress(spec, position, report, counts["epochs"], total, counts["models"], len(specs))
                if progress is not None:
                    progress(step)

        try:
            if stop():
                raise TrainingCancelled(f"Training of {spec.name} was cancelled.")
            data = load_dataset(spec.dataset)
            result = train_loop(spec, data, dev, progress=on_epoch, cancel=stop, batch_size=None, amp=True)
            with lock:
                on_trained(spec, result)
                counts["models"] += 1
                last = result.history[-1]
                if progress is not None:
                    progress(
                        ManyProgress(
                            spec, position, last, counts["epochs"], total, counts["models"], len(specs), result
                        )
                    )
        except TrainingFailed:
            raise  # this model learned nothing; the others go on
        except BaseException:
            failed.set()
            raise

    if workers <= 1:
        at_chance: list[TrainingFailed] = []
        for position, spec in enumerate(specs, start=1):
            with cpu_threads(training_threads(get_info(spec.dataset), dev)):
                try:
                    train_one(position, spec)
                except TrainingFailed as exc:
                    at_chance.append(exc)
        if at_chance:
            raise at_chance[0].with_others(at_chance)
        return
    with cpu_threads(1), ThreadPoolExecutor(workers, thread_name_prefix="trend-train") as pool:
        futures = [pool.submit(train_one, position, spec) for position, spec in enumerate(specs, start=1)]
        wait(futures, return_when=FIRST_EXCEPTION)
        wait(futures)
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    real = [e for e in errors if not isinstance(e, (TrainingCancelled, TrainingFailed))]
    cancelled = [e for e in errors if isinstance(e, TrainingCancelled)]
    at_chance = [e for e in errors if isinstance(e, TrainingFailed)]
    if real or cancelled:
        raise (real or cancelled)[0]
    if at_chance:
        raise at_chance[0].with_others(at_chance)
