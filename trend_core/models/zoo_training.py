"""Training into a zoo on an executor with one line of progress per finished model (the CLI's cluster path):
the zoo trains what it lacks through ``trend_core.training.run`` and saves each model as it lands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from trend_core.config.specs import ModelSpec, parse_spec
from trend_core.models.zoo import Zoo
from trend_core.runtime.executors import Executor
from trend_core.training.many import ManyProgress


@dataclass(frozen=True)
class TrainStep:
    """Progress of ``train_specs``: ``done`` of ``total`` models finished; ``name`` the one just written."""

    done: int
    total: int
    name: str
    test_acc: float | None


def train_specs(
    zoo: Zoo,
    specs: Sequence[ModelSpec | str],
    device: Any = "auto",
    executor: Executor | str | None = None,
    progress: Callable[[TrainStep], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[dict]:
    """Train the specs the zoo lacks (on ``executor``'s workers when it is distributed) and write each to the zoo
    as it completes; returns every spec's metadata (in the order given). Pretrained torchvision specs are fetched,
    not trained."""
    chosen: list[ModelSpec] = list(dict.fromkeys(parse_spec(s) for s in specs))

    def on_step(step: ManyProgress) -> None:
        if progress is not None and (step.report is None or step.result is not None):  # a whole model landed
            test_acc = zoo.metadata(step.spec).get("test_acc")
            progress(TrainStep(step.models_done, step.models_total, step.spec.name, test_acc))

    zoo.train_many(chosen, device=device, progress=on_step, cancel=cancel, executor=executor)
    return [zoo.metadata(spec) for spec in chosen]
