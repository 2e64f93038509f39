"""Training as units of work on an executor: each unit trains one spec from its seed on a worker and returns
the weights as safetensors bytes with their metadata; the driver rebuilds each model and hands it over as it
lands, so a lost worker or a cancel never leaves a half-trained model behind."""

from __future__ import annotations

from typing import Callable, Sequence

from safetensors.torch import load, save

from trend_core.config.specs import ModelSpec
from trend_core.nn.build import TrendModel, build_model
from trend_core.runtime.executors import Executor, finished_units, worker_device
from trend_core.training.many import ManyProgress
from trend_core.training.train import TrainingCancelled, train_model, trained_metadata

OnTrained = Callable[[ModelSpec, TrendModel, dict], object]  # (spec, model, metadata); what it returns is unused


def train_unit(spec: dict, device: str = "auto") -> dict:
    """Train one spec from its seed; the best-validation weights as safetensors bytes, and the zoo's metadata."""
    result = train_model(ModelSpec.from_dict(spec), device=device)
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    return {"weights": save(state), "meta": trained_metadata(result, device)}


def train_on_executor(
    executor: Executor,
    specs: Sequence[ModelSpec],
    on_trained: OnTrained,
    device: object = "auto",
    progress: Callable[[ManyProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> None:
    """Train ``specs`` as parallel units on ``executor`` and hand each model, with its metadata, to
    ``on_trained`` as it completes; ``progress`` gets a ManyProgress per finished model (no epoch reports)."""
    dev = worker_device(device)
    total, epochs_done = sum(s.epochs or 1 for s in specs), 0
    futures = {executor.submit(train_unit, spec.to_dict(), dev, gpu=dev != "cpu"): spec for spec in specs}
    landed = finished_units(executor, futures, cancel, lambda: TrainingCancelled("Training was cancelled."))
    for done, (future, value) in enumerate(landed, start=1):
        spec = futures[future]
        model = build_model(spec)
        model.load_state_dict(load(value["weights"]))
        on_trained(spec, model, value["meta"])
        epochs_done += spec.epochs or 1
        if progress is not None:
            position = list(specs).index(spec) + 1
            progress(ManyProgress(spec, position, None, epochs_done, total, done, len(specs)))
