"""Tables built from zoo metadata (no model loading): what the overview and the Model zoo page list."""

from __future__ import annotations

import pandas as pd

ZOO_COLUMNS = [
    "label",
    "arch",
    "width",
    "input",
    "weight bits",
    "act bits",
    "optimizer",
    "seed",
    "epochs",
    "test acc %",
    "val acc %",
    "train s",
    "source",
    "name",
]


def _bits(value) -> str:
    return "FP" if value in (None, 32) else str(value)


def _percent(value) -> float | None:
    return None if value is None else round(100 * float(value), 2)


def model_labels(metas: list[dict]) -> dict[str, str]:
    """Canonical name -> the unique short label every picker, table and chart shows (trend_core.config.labels)."""
    from trend_core.config.labels import label_map

    return label_map(m["name"] for m in metas if m.get("name"))


def zoo_label_map(metas: list[dict], names=()) -> dict[str, str]:
    """Canonical name -> label for ``names`` (e.g. a transfer run's models), unique across the zoo's models as
    the pickers show them (a model no longer in the zoo keeps a label that tells it apart too)."""
    from trend_core.config.labels import label_map

    names = list(names)
    mapping = label_map([*(m["name"] for m in metas if m.get("name")), *names])
    return {n: mapping[n] for n in names}


def zoo_frame(metas: list[dict]) -> pd.DataFrame:
    """One row per model: its paper-style label, spec fields and clean accuracies (%), like Tables IV-VI."""
    labels = model_labels(metas)
    rows = []
    for meta in metas:
        spec = meta.get("spec", {})
        rows.append(
            {
                "label": labels.get(meta.get("name"), meta.get("short_name", "")),
                "arch": spec.get("arch"),
                "width": spec.get("width"),
                "input": spec.get("input_quant"),
                "weight bits": _bits(spec.get("weight_bits")),
                "act bits": _bits(spec.get("act_bits")),
                "optimizer": spec.get("optimizer"),
                "seed": spec.get("seed"),
                "epochs": spec.get("epochs"),
                "test acc %": _percent(meta.get("test_acc")),
                "val acc %": _percent(meta.get("val_acc")),
                "train s": meta.get("train_seconds"),
                "source": meta.get("source", "trained"),
                "name": meta.get("name"),
            }
        )
    return pd.DataFrame(rows, columns=ZOO_COLUMNS)


# What a statistics table's columns are called on screen (the engine's names are for code and CSV files).
COLUMN_TITLES = {
    "models": "models",
    "pairs": "pairs",
    "generated": "generated",
    "transferred": "transferred",
    "transfer_pct": "transfer %",
    "l2": "mean L2",
    "linf": "mean L-inf",
}


def readable_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its statistic columns renamed for people (transfer_pct -> "transfer %", l2 -> "mean L2")."""
    return frame.rename(columns=COLUMN_TITLES)


def mean_std_frame(stats: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Collapse ``<x>_mean`` / ``<x>_std`` column pairs into one 'mean ± std' text column per statistic."""
    out = pd.DataFrame(index=stats.index)
    for column in stats.columns:
        if column.endswith("_std"):
            continue
        if column.endswith("_mean"):
            base = column[: -len("_mean")]
            std = stats.get(f"{base}_std")
            out[base] = [
                _pm(m, s, digits) for m, s in zip(stats[column], std if std is not None else [None] * len(stats))
            ]
        else:
            out[column] = stats[column]
    return out


def _pm(mean, std, digits: int) -> str:
    if mean is None or mean != mean:
        return "n/a"
    if std is None or std != std:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
