"""A transfer run's result: TM of every ordered (source, target) pair, its matrix, JSON and per-image views.

For every ordered pair (source s, target t), on the images both classify correctly:

    n_common     images both s and t classify correctly
    generated    f_ss: those the attack on s turned adversarial for s
    transferred  f_st: those of f_ss that also fool t
    tm           f_st / f_ss  (NaN when f_ss = 0: undefined, and reported in ``warnings``); 1 on the diagonal
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd
import torch
import torch.nn as nn

from trend_core.attacks.base import predict
from trend_core.errors import TrendError

PAIR_COLUMNS = ["source", "target", "n_common", "generated", "transferred", "tm", "mean_l2", "mean_linf"]


@dataclass
class PairExamples:
    """The adversarial images a source generated (within the pair's common subset) and which of them transferred."""

    source: str
    target: str
    indices: torch.Tensor  # positions in the evaluation subset, ascending
    transferred: torch.Tensor  # bool per index: the image also fools the target
    clean: torch.Tensor
    adv: torch.Tensor
    labels: torch.Tensor
    source_pred: torch.Tensor  # the source's prediction on the adversarial image
    target_pred: torch.Tensor  # the target's prediction on the adversarial image

    @property
    def transferred_indices(self) -> torch.Tensor:
        return self.indices[self.transferred]

    @property
    def resisted_indices(self) -> torch.Tensor:
        """Adversarial on the source but classified correctly by the target."""
        return self.indices[~self.transferred]


@dataclass
class TransferDetails:
    """Per-image outcomes behind a TransferResult (kept for ``examples``; not serialized)."""

    x: torch.Tensor
    y: torch.Tensor
    correct: dict[str, torch.Tensor]  # model -> bool per image: right on the clean image
    success: dict[str, torch.Tensor]  # source -> bool per image: the attack fooled the source
    adv_pred: dict[tuple[str, str], torch.Tensor]  # (source, target != source) -> target's predictions on x_adv
    adv_loader: Callable[[str], torch.Tensor]  # source -> its adversarial images (read from the store)
    models: dict[str, nn.Module]  # source -> model, to label the few images ``examples`` shows
    l2: dict[str, torch.Tensor] = field(default_factory=dict)  # source -> L2 norm of each image's perturbation


@dataclass
class TransferResult:
    """TM of every ordered (source, target) pair for one attack at one eps; ``pairs`` is the long form."""

    pairs: pd.DataFrame
    sources: list[str]
    targets: list[str]
    attack: str = ""
    eps: float | None = None
    split: str = "test"
    n_images: int = 0
    specs: dict[str, str | None] = field(default_factory=dict)  # model label -> canonical spec name
    warnings: list[str] = field(default_factory=list)
    details: TransferDetails | None = field(default=None, repr=False, compare=False)

    def long(self) -> pd.DataFrame:
        """One row per ordered pair: counts, TM and mean perturbation norms, with the attack and eps."""
        frame = self.pairs[PAIR_COLUMNS].copy()
        frame["attack"], frame["eps"] = self.attack, self.eps
        return frame

    def matrix(self, value: str = "tm", averages: bool = True) -> pd.DataFrame:
        """``value`` (default TM) as rows = source, columns = target, plus a ``row_avg`` column and a ``col_avg`` row.

        Averages exclude the diagonal (a model against itself, TM 1 by definition) and NaN cells; the corner
        cell is the mean of every off-diagonal cell. Row average: how good a source is for the attacker;
        column average: how exposed a target is.
        """
        if value not in self.pairs.columns:
            raise TrendError(f"Unknown matrix value {value!r}; choose one of {', '.join(PAIR_COLUMNS[2:])}.")
        grid = self.pairs.pivot(index="source", columns="target", values=value)
        grid = grid.reindex(index=self.sources, columns=self.targets).astype(float)
        grid.index.name, grid.columns.name = "source", "target"
        if not averages:
            return grid
        off = grid.where(~_diagonal_mask(grid))
        out = grid.copy()
        out["row_avg"] = off.mean(axis=1)
        out.loc["col_avg"] = [*off.mean(axis=0), off.stack().mean()]
        return out

    def to_dict(self) -> dict:
        """A JSON-able summary: settings, the TM matrix with averages, the long form and warnings (NaN -> None)."""
        matrix = self.matrix()
        return json_safe(
            {
                "attack": self.attack,
                "eps": self.eps,
                "split": self.split,
                "n_images": self.n_images,
                "sources": self.sources,
                "targets": self.targets,
                "specs": self.specs,
                "tm": {s: {t: matrix.at[s, t] for t in self.targets} for s in self.sources},
                "row_avg": {s: matrix.at[s, "row_avg"] for s in self.sources},
                "col_avg": {t: matrix.at["col_avg", t] for t in self.targets},
                "pairs": self.pairs[PAIR_COLUMNS].to_dict(orient="records"),
                "warnings": self.warnings,
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def spec_names(self, labels: Sequence[str]) -> list[str]:
        """The canonical spec names of models given by their labels in this result (what the zoo loads)."""
        names = []
        for label in labels:
            name = self.specs.get(label)
            if not name:
                raise TrendError(f"{label} is not a zoo model, so it cannot be loaded for the evaluation.")
            names.append(name)
        return names

    def image_outcomes(self) -> pd.DataFrame:
        """Per evaluation image, everything the pair counts are made of, for bootstrapping them over the images:
        ``correct:<model>`` (right on the clean image), ``success:<source>`` (the attack fooled the source),
        ``fooled:<source>><target>`` (the target is wrong on the source's adversarial image) and ``l2:<source>``
        (the perturbation's L2 norm). A pair's f_ss is correct:s & correct:t & success:s, its f_st those of f_ss
        with fooled:s>t."""
        if self.details is None:
            raise TrendError("This transfer result carries no per-image details; rerun the transfer.")
        d = self.details
        columns: dict[str, Any] = {f"correct:{m}": v.numpy() for m, v in d.correct.items()}
        columns.update({f"success:{s}": v.numpy() for s, v in d.success.items()})
        columns.update({f"fooled:{s}>{t}": (p != d.y).numpy() for (s, t), p in d.adv_pred.items()})
        columns.update({f"l2:{s}": v.float().numpy() for s, v in d.l2.items()})
        return pd.DataFrame(columns)

    def examples(self, source: str, target: str) -> PairExamples:
        """The images ``source`` generated on the common subset with ``target``, split by whether they transferred."""
        if self.details is None:
            raise TrendError("This transfer result carries no per-image details; rerun the transfer to see examples.")
        if source not in self.sources or target not in self.targets:
            raise TrendError(
                f"No pair {source!r} -> {target!r} in this result; sources: {', '.join(self.sources)}; "
                f"targets: {', '.join(self.targets)}."
            )
        d = self.details
        generated = d.success[source] & d.correct[source] & d.correct[target]
        idx = generated.nonzero().flatten()
        adv = d.adv_loader(source)[idx]
        source_pred = predict(d.models[source], adv)
        if source == target:
            target_pred, transferred = source_pred, torch.ones_like(idx, dtype=torch.bool)
        else:
            target_pred = d.adv_pred[(source, target)][idx]
            transferred = target_pred != d.y[idx]
        return PairExamples(source, target, idx, transferred, d.x[idx], adv, d.y[idx], source_pred, target_pred)


def build_result(
    d: TransferDetails,
    norms,
    sources: list[str],
    targets: list[str],
    attack: str,
    eps: float | None,
    split: str,
    specs: dict,
) -> TransferResult:
    """The pair table of one eps from the per-image outcomes ``d`` and the sources' perturbation ``norms``."""
    l2, linf = norms
    rows: list[dict] = []
    empty: dict[str, list[str]] = {}
    for s in sources:
        for t in targets:
            generated = d.success[s] & d.correct[s] & d.correct[t]
            f_ss = int(generated.sum())
            if s == t:
                f_st, tm = f_ss, 1.0
            else:
                f_st = int((generated & (d.adv_pred[(s, t)] != d.y)).sum())
                tm = f_st / f_ss if f_ss else math.nan
                if not f_ss:
                    empty.setdefault(s, []).append(t)
            rows.append(
                {
                    "source": s,
                    "target": t,
                    "n_common": int((d.correct[s] & d.correct[t]).sum()),
                    "generated": f_ss,
                    "transferred": f_st,
                    "tm": tm,
                    "mean_l2": float(l2[s][generated].mean()) if f_ss else math.nan,
                    "mean_linf": float(linf[s][generated].mean()) if f_ss else math.nan,
                }
            )
    warnings = [
        f"TM is undefined (NaN) for {s} -> {', '.join(ts)}: the attack on {s} generated no adversarial "
        f"images among the images both models classify correctly."
        for s, ts in empty.items()
    ]
    return TransferResult(
        pd.DataFrame(rows, columns=PAIR_COLUMNS), sources, targets, attack, eps, split, len(d.y), specs, warnings, d
    )


def _diagonal_mask(grid: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([[s == t for t in grid.columns] for s in grid.index], index=grid.index, columns=grid.columns)


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf as None, numpy/torch scalars as numbers and keys as strings: ready for json.dumps."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item"):
        return json_safe(obj.item())
    return obj
