"""Clean-accuracy tables of zoo models, like the paper's Tables IV-VI."""

from __future__ import annotations

import pandas as pd

from trend_core.config.specs import ModelSpec
from trend_core.data.datasets import load_dataset
from trend_core.models.zoo import Zoo
from trend_core.runtime.devices import resolve_device
from trend_core.training.train import accuracy


def accuracy_table(specs: list[ModelSpec], zoo: Zoo, split: str = "test", device: str = "auto") -> pd.DataFrame:
    """One row per model: architecture, input/weight/activation bits, optimizer, seed and accuracy (%)."""
    dev = resolve_device(device)
    rows = []
    bundles: dict[str, object] = {}
    for spec in specs:
        bundle = bundles.setdefault(spec.dataset, load_dataset(spec.dataset))
        model = zoo.load(spec, dev)
        rows.append(
            {
                "name": spec.name,
                "label": spec.short_name,
                "arch": spec.arch,
                "input": spec.input_quant,
                "weight_bits": spec.weight_bits,
                "act_bits": spec.act_bits,
                "optimizer": spec.optimizer,
                "seed": spec.seed,
                f"{split}_acc_%": 100 * accuracy(model, bundle.split(split), dev),
            }
        )
    return pd.DataFrame(rows).set_index("name")
