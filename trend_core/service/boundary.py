"""Decision-boundary slices as jobs: the class maps of one or two models around a test image."""

from __future__ import annotations

from typing import Sequence

import torch

from trend_core.attacks.base import check_int
from trend_core.errors import TrendError
from trend_core.experiments.boundary import decision_boundary
from trend_core.models.members import (
    check_members,
    load_members,
    model_dataset,
    model_identity,
    test_count,
    test_images,
)
from trend_core.models.zoo import Zoo
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.jobs import Job, JobManager
from trend_core.service import commands
from trend_core.service.submit import submit_job
from trend_core.storage.store import AnyStore


def submit_boundary(
    zoo: Zoo,
    store: AnyStore,
    models: Sequence[str],
    index: int,
    span: float | None = None,
    resolution: int = 41,
    seed: int = 0,
    device: str = "auto",
    manager: JobManager | None = None,
) -> Job:
    """Class maps of one or two models on a grid around test image ``index`` (x = the first model's gradient).

    Result: x_offsets, y_offsets (lists), names, classes (name -> (R, R) int tensor), distances (DataFrame:
    model, clean_pred, +x, -x, +y, -y), label, reference (the model giving the x direction), index.
    """
    names = check_members(zoo, models, 1)
    if len(names) > 2:
        raise TrendError(f"Pick one or two models for the decision boundary, not {len(names)}.")
    dataset = model_dataset(names[0])
    total = test_count(dataset)
    index = check_int("The image index", index, 0)
    if index >= total:
        raise TrendError(f"The {dataset} test split has {total} images; pick an index below {total}.")
    dev = resolve_device(device)

    def run(job: Job) -> dict:
        members = load_members(zoo, names, dev, job)
        x, y = test_images(dataset, index + 1)
        job.progress(0.5, f"classifying a {resolution} x {resolution} grid")
        sl = decision_boundary(members, x[index], int(y[index]), span=span, resolution=resolution, seed=seed)
        distances = sl.distance_frame().reset_index()
        return {
            "x_offsets": [float(v) for v in sl.x_offsets],
            "y_offsets": [float(v) for v in sl.y_offsets],
            "names": sl.names,
            "classes": {n: torch.from_numpy(sl.classes[n].astype("int64")) for n in sl.names},
            "distances": distances,
            "label": int(sl.label),
            "reference": sl.reference,
            "index": index,
        }

    return submit_job(
        zoo,
        [model_identity(zoo, names), index, span, resolution, seed],
        run,
        title=f"Decision boundary of image {index}",
        kind="boundary",
        device=dev,
        store=store,
        manager=manager,
        models=names,
        meta={"models": names, "index": index},
        command=commands.boundary_command(names, index, span, resolution, seed, zoo.root, device),
    )
