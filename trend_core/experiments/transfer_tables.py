"""Transfer between seed groups (the paper's Tables II and III): mean +- std over the pairs of a TransferResult
within one model configuration's seeds, or between two groups in both directions."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from trend_core.errors import TrendError
from trend_core.experiments.transfer_result import TransferResult

STAT_COLUMNS = {
    "generated": "generated",
    "transferred": "transferred",
    "transfer_pct": "transfer_pct",
    "l2": "mean_l2",
    "linf": "mean_linf",
}


def seed_free_name(spec_name: str) -> str:
    """A spec's canonical name with the seed part removed: the model's configuration."""
    parts = spec_name.split("/")
    return "/".join(p for i, p in enumerate(parts) if i != 4)


def model_groups(result: TransferResult) -> dict[str, list[str]]:
    """Model labels grouped by configuration (spec without the seed); models without a spec are left out."""
    groups: dict[str, list[str]] = {}
    for label in dict.fromkeys(result.sources + result.targets):
        name = result.specs.get(label)
        if name:
            groups.setdefault(seed_free_name(name), []).append(label)
    return groups


def pair_statistics(pairs: pd.DataFrame) -> dict:
    """Mean and sample std over pairs of generated, transferred, transfer % (100 TM), mean L2 and L-inf."""
    stats: dict[str, Any] = {"pairs": len(pairs)}
    values = pairs.assign(transfer_pct=100 * pairs["tm"])
    for name, column in STAT_COLUMNS.items():
        series = values[column].astype(float)
        stats[f"{name}_mean"] = series.mean()
        stats[f"{name}_std"] = series.std(ddof=1)
    return stats


def seed_group_table(result: TransferResult, groups: dict[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """Mean +- std over each seed group (the paper's Table II): every source seed against every *other* target
    seed of the same configuration (diagonal excluded). ``groups`` default: ``model_groups(result)``.
    Std is the sample std over pairs (NaN for a single pair); NaN TMs are left out of the transfer % stats."""
    chosen = model_groups(result) if groups is None else {str(k): list(v) for k, v in groups.items()}
    rows = {}
    for name, members in chosen.items():
        _check_labels(result, members)
        pairs = result.pairs[
            result.pairs["source"].isin(members)
            & result.pairs["target"].isin(members)
            & (result.pairs["source"] != result.pairs["target"])
        ]
        if len(pairs):
            rows[name] = {"models": len(members), **pair_statistics(pairs)}
    if not rows:
        raise TrendError("No seed group has two models that are both source and target; add more seeds.")
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("group")


def cross_table(result: TransferResult, group_a: Sequence[str] | str, group_b: Sequence[str] | str) -> pd.DataFrame:
    """Transfer between two groups in both directions (the paper's Table III, SGD <-> Adam): mean +- std over
    every source of one group against every target of the other. Groups are label lists or group names."""
    known = model_groups(result)
    named = []
    for group in (group_a, group_b):
        if isinstance(group, str):
            if group not in known:
                raise TrendError(f"Unknown group {group!r}; the groups are: {', '.join(known) or 'none'}.")
            named.append((group, known[group]))
        else:
            members = list(group)
            _check_labels(result, members)
            named.append(("+".join(members), members))
    (name_a, a), (name_b, b) = named
    rows = {}
    for (n_src, src), (n_tgt, tgt) in (((name_a, a), (name_b, b)), ((name_b, b), (name_a, a))):
        pairs = result.pairs[
            result.pairs["source"].isin(src)
            & result.pairs["target"].isin(tgt)
            & (result.pairs["source"] != result.pairs["target"])
        ]
        if not len(pairs):
            raise TrendError(
                f"The result has no pairs from {n_src} to {n_tgt}; include both groups as sources and targets."
            )
        rows[f"{n_src} -> {n_tgt}"] = pair_statistics(pairs)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("direction")


def _check_labels(result: TransferResult, labels: Sequence[str]) -> None:
    known = set(result.sources) | set(result.targets)
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise TrendError(f"Unknown model {unknown[0]!r}; the result holds: {', '.join(sorted(known))}.")
