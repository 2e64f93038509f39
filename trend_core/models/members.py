"""Zoo models picked by name for one analysis: checking the names, their labels, what pins their weights, loading
them, and the test images they are judged on (shared by the dashboard's jobs and the headless pipeline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from trend_core.config.labels import label_map, set_label
from trend_core.config.user_models import parse_model_name
from trend_core.data.datasets import load_dataset
from trend_core.errors import TrendError
from trend_core.models.zoo import Zoo


def home_of(zoo: Zoo) -> str:
    """The zoo's store folder, resolved: what keys a job to one folder and what pages match jobs against."""
    return str(Path(zoo.root).expanduser().resolve())


def model_dataset(name: str) -> str:
    """The dataset a zoo model's name says it classifies (a spec name or an imported ``user/<dataset>/<name>``)."""
    return parse_model_name(name).dataset


def dataset_of(names: Sequence[str]) -> str | None:
    """The dataset of the models a job works on (from the first name), so that pages show a job's result only
    while the sidebar shows its dataset; None when unknown."""
    try:
        return model_dataset(names[0]) if names else None
    except (TrendError, ValueError, TypeError, AttributeError):
        return None


def check_members(zoo: Zoo, names: Sequence[str], minimum: int = 1, what: str = "model") -> list[str]:
    """Distinct zoo model names, at least ``minimum`` of them, all present in ``zoo``."""
    names = list(dict.fromkeys(str(n) for n in names))
    if len(names) < minimum:
        if minimum == 2 and what == "ensemble member":
            raise TrendError(
                f"An ensemble needs at least two members; {'only one was' if names else 'none was'} chosen."
            )
        count = {1: "one", 2: "two"}.get(minimum, str(minimum))
        raise TrendError(f"Pick at least {count} {what}{'s' if minimum > 1 else ''}.")
    missing = [n for n in names if not zoo.has(n)]
    if missing:
        how = "import it" if missing[0].startswith("user/") else "train it"
        raise TrendError(f"{missing[0]} is not in the zoo; {how} on the Model zoo page first.")
    return names


def model_identity(zoo: Zoo, names: Sequence[str]) -> list[tuple]:
    """What pins a zoo model's weights for a cache key: name, spec key (an imported network's own key) and when it
    was saved."""
    return [(n, parse_model_name(n).key, zoo.metadata(n).get("created")) for n in names]


def zoo_labels(zoo: Zoo, names: Sequence[str]) -> dict[str, str]:
    """Canonical name -> the model's label unique across the zoo's models of its dataset: what the dashboard's
    pickers show, so charts, titles and CSVs made from these models say the same ("FP-s0-e20" wherever the
    quick demo's "FP-s0-e4" is in the zoo too)."""
    dataset = dataset_of(names)
    everything = [m["name"] for m in zoo.list(dataset, imported_networks=True) if m.get("name")] if dataset else []
    mapping = label_map([*everything, *names])
    return {n: mapping[n] for n in names}


def load_members(zoo: Zoo, names: Sequence[str], device: str | torch.device, job: Any = None) -> list:
    """The named zoo models on ``device`` (eval mode), each carrying its zoo-wide label (``zoo_labels``),
    reporting progress through ``job.progress`` (a runtime Job) while loading."""
    labels = zoo_labels(zoo, names)
    models = []
    for i, name in enumerate(names):
        if job is not None:
            job.progress(None, f"loading {labels[name]} ({i + 1}/{len(names)})")
        models.append(set_label(zoo.load(name, device), labels[name]))
    return models


def test_images(dataset: str, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` test images and labels of ``dataset`` (the evaluation subset every page uses)."""
    return load_dataset(dataset).tensors("test", limit)


def test_count(dataset: str) -> int:
    """How many test images ``dataset`` has."""
    return len(load_dataset(dataset).test)  # type: ignore[arg-type]  # (a torch Dataset with __len__)


def zoo_accuracies(zoo: Zoo, result: Any) -> dict[str, float]:
    """Clean test accuracy of each zoo model of a transfer result (its ``specs``: label -> canonical name), by
    its label, from the zoo's metadata."""
    specs: Mapping[str, str | None] = result.specs
    found = {}
    for label, name in specs.items():
        if name and zoo.has(name):
            acc = zoo.metadata(name).get("test_acc")
            if acc is not None:
                found[label] = float(acc)
    return found
