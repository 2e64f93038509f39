"""The one way to train models: on this machine (small-image models side by side, ``training.many``) or, when
the chosen executor is distributed (Ray), as units on its workers (``training.units``). Each model is handed
over with its metadata as soon as it is trained, so the caller keeps whatever finished before a cancel or a
failure; nothing here knows where models are stored."""

from __future__ import annotations

from typing import Callable, Sequence

from trend_core.config.specs import ModelSpec
from trend_core.runtime.executors import Executor, get_executor
from trend_core.training.many import ManyProgress, train_models
from trend_core.training.train import TrainResult, trained_metadata
from trend_core.training.units import OnTrained, train_on_executor


def run_training(
    specs: Sequence[ModelSpec],
    on_trained: OnTrained,
    device: str = "auto",
    progress: Callable[[ManyProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    executor: Executor | str | None = None,
) -> None:
    """Train each of ``specs`` from its seed and call ``on_trained(spec, model, metadata)`` once it is done.

    ``executor`` (default: the one chosen by --executor / TREND_EXECUTOR): a distributed one trains on its
    workers, with one ``progress`` step per finished model; otherwise the models train here with a step per
    epoch and one per model (``train_models``). Raises TrainingCancelled on cancel, TrainingFailed when a model
    ended at chance (after the others were trained), or the first other failure.
    """
    specs = list(dict.fromkeys(specs))
    if not specs:
        return
    ex = get_executor(executor)
    if ex.distributed:
        train_on_executor(ex, specs, on_trained, device, progress, cancel)
        return

    def hand_over(spec: ModelSpec, result: TrainResult) -> None:
        on_trained(spec, result.model, trained_metadata(result, device))

    train_models(specs, hand_over, device=device, progress=progress, cancel=cancel)
