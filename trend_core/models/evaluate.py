"""Clean-accuracy tables of zoo models, like the paper's Tables IV-VI (imported networks too)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from trend_core.config.specs import ModelSpec
from trend_core.config.user_models import UserModelName
from trend_core.data.datasets import DatasetBundle, load_dataset
from trend_core.models.zoo import Zoo
from trend_core.runtime.devices import resolve_device
from trend_core.training.train import accuracy


def _describe(spec: ModelSpec | UserModelName, zoo: Zoo) -> dict:
    """The table's descriptive columns: a spec's fields; for an imported network (no spec) "imported" and its
    input transform (None: the network takes the pixels as they are)."""
    if isinstance(spec, UserModelName):
        meta = zoo.metadata(spec)
        return {"arch": "imported", "input": meta.get("transform") or "FP", "weight_bits": None, "act_bits": None}
    return {
        "arch": spec.arch,
        "input": spec.input_quant,
        "weight_bits": spec.weight_bits,
        "act_bits": spec.act_bits,
        "optimizer": spec.optimizer,
        "seed": spec.seed,
    }


def accuracy_table(
    specs: Sequence[ModelSpec | UserModelName], zoo: Zoo, split: str = "test", device: str = "auto"
) -> pd.DataFrame:
    """One row per model: architecture, input/weight/activation bits, optimizer, seed and accuracy (%); an
    imported network (``user/<dataset>/<name>``) is loaded as the zoo keeps it and measured the same way."""
    dev = resolve_device(device)
    rows = []
    bundles: dict[str, DatasetBundle] = {}
    for spec in specs:
        model = zoo.load(spec, dev)  # first: a missing or damaged model says so before its dataset loads
        bundle = bundles.setdefault(spec.dataset, load_dataset(spec.dataset))
        rows.append(
            {
                "name": spec.name,
                "label": spec.short_name,
                "arch": None,
                "input": None,
                "weight_bits": None,
                "act_bits": None,
                "optimizer": None,
                "seed": None,
                **_describe(spec, zoo),
                f"{split}_acc_%": 100 * accuracy(model, bundle.split(split), dev),
            }
        )
    return pd.DataFrame(rows).set_index("name")
