"""TREND selection: ``select_ensembles`` picks the k-member set with the lowest mean pairwise (symmetrized) TM
from a transfer run's matrix; ``read_tm`` reads the matrices `trend transfer` writes.
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from trend_core.errors import TrendError

ENSEMBLE_LABEL = "ensemble"
EXHAUSTIVE_LIMIT = 50_000  # candidate subsets scored exhaustively; greedy search beyond


def read_tm(path: str | Path, eps: float | None = None, attack: str | None = None) -> pd.DataFrame:
    """A TM matrix (rows = source, columns = target) from the CSV `trend transfer --csv` or `--long-csv` writes.

    The matrix form's ``row_avg`` column and ``col_avg`` row are dropped; the long form (columns source,
    target, tm) is pivoted, after keeping only ``eps`` / ``attack`` when it holds several.
    """
    path = Path(path)
    if not path.is_file():
        raise TrendError(f"No TM file at {path}.")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TrendError(f"{path} is not a readable CSV file ({str(exc).splitlines()[0]}).") from None
    _check_row_lengths(path)
    if {"source", "target", "tm"} <= set(frame.columns):
        return _checked_tm(_pivot_long(frame, path, eps, attack), path)
    if frame.shape[1] < 3:
        raise TrendError(f"{path} holds no TM matrix (expected a source column and one column per target).")
    frame = frame.set_index(frame.columns[0])
    frame = frame.drop(columns=[c for c in frame.columns if str(c) == "row_avg"])
    frame = frame.drop(index=[i for i in frame.index if str(i) == "col_avg"])
    frame.index = frame.index.map(str)
    frame.columns = frame.columns.map(str)
    try:
        frame = frame.apply(pd.to_numeric, errors="raise").astype(float)
    except (ValueError, TypeError):
        raise TrendError(
            f"{path} has non-numeric TM values; expected the CSV that `trend transfer --csv` writes."
        ) from None
    frame.index.name, frame.columns.name = "source", "target"
    return _checked_tm(frame, path)


def _check_row_lengths(path: Path) -> None:
    """Refuse a CSV row with more or fewer fields than its header: pandas would pad a short row with NaN (read as
    "no TM", so the pair would be ranked from the other direction alone) or shift a long one into the index."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [(n, row) for n, row in enumerate(csv.reader(handle), start=1) if any(cell.strip() for cell in row)]
    width = len(rows[0][1])
    for line, row in rows[1:]:
        if len(row) != width:
            raise TrendError(
                f"{path}: line {line} has {len(row)} fields but the header has {width}; write every TM "
                "(an empty field for an undefined one) or export the file again with `trend transfer --csv`."
            )


def _checked_tm(grid: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Refuse a TM matrix whose rows and columns name different models or whose values leave [0, 1]
    (NaN stays: a source that fooled nothing has no TM)."""
    rows, columns = list(grid.index), list(grid.columns)
    for name in rows:
        if name not in columns:
            raise TrendError(f"{path}: model {name!r} has a row but no column; the TM file is incomplete.")
    for name in columns:
        if name not in rows:
            raise TrendError(f"{path}: model {name!r} has a column but no row; the TM file is incomplete.")
    if len(set(rows)) != len(rows):
        raise TrendError(f"{path} names some model in more than one row.")
    check_tm_values(grid, str(path))
    return grid


def check_tm_values(grid: pd.DataFrame, where: str = "The TM matrix") -> np.ndarray:
    """The matrix's values as floats, or a TrendError when one is not a number in [0, 1] (NaN, an undefined TM,
    is allowed); ``where`` names the matrix in the message."""
    try:
        values = grid.apply(pd.to_numeric, errors="raise").to_numpy(dtype=float)
    except (ValueError, TypeError):
        raise TrendError(f"{where} has non-numeric TM values; TM is a fraction of adversarial images.") from None
    bad = ~np.isnan(values) & ~((values >= 0) & (values <= 1))
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        raise TrendError(
            f"{where}: TM of {grid.index[i]!r} -> {grid.columns[j]!r} is {values[i, j]}, outside [0, 1]; "
            "TM is a fraction of adversarial images."
        )
    return values


def _pivot_long(frame: pd.DataFrame, path: Path, eps: float | None, attack: str | None) -> pd.DataFrame:
    for column, wanted in (("eps", eps), ("attack", attack)):
        if column not in frame.columns:
            continue
        if wanted is not None:
            keep = (
                np.isclose(frame[column].astype(float), float(wanted)) if column == "eps" else frame[column] == wanted
            )
            frame = frame[keep]
            if frame.empty:
                raise TrendError(f"{path} has no rows with {column} = {wanted}.")
        values = frame[column].dropna().unique()
        if len(values) > 1:
            raise TrendError(f"{path} holds several {column} values ({', '.join(map(str, values))}); pick one.")
    if frame.duplicated(["source", "target"]).any():
        raise TrendError(f"{path} lists some (source, target) pair more than once.")
    try:
        frame = frame.assign(tm=pd.to_numeric(frame["tm"], errors="raise").astype(float))
    except (ValueError, TypeError):
        raise TrendError(
            f"{path} has non-numeric TM values; expected the CSV that `trend transfer --long-csv` writes."
        ) from None
    grid = frame.pivot(index="source", columns="target", values="tm")
    grid.index, grid.columns = grid.index.map(str), grid.columns.map(str)
    grid.index.name, grid.columns.name = "source", "target"
    return grid


def symmetrize(tm: pd.DataFrame) -> pd.DataFrame:
    """(TM(a->b) + TM(b->a)) / 2 over the models that are both sources and targets (one direction if the other
    is missing); the diagonal is NaN (a model is not its own ensemble partner)."""
    models = [m for m in tm.index if m in tm.columns]
    if len(models) < 2:
        raise TrendError(
            "TREND selection needs a TM matrix over at least two models that are both sources and targets."
        )
    if len(set(models)) != len(models):
        raise TrendError("The TM matrix names some model twice.")
    square = check_tm_values(tm.loc[models, models])
    both = np.stack([square, square.T])
    defined = (~np.isnan(both)).sum(axis=0)
    sym = np.where(defined > 0, np.nansum(both, axis=0) / np.maximum(defined, 1), np.nan)
    np.fill_diagonal(sym, np.nan)
    return pd.DataFrame(sym, index=models, columns=models)


def select_ensembles(
    tm_matrix: pd.DataFrame,
    k: int,
    require: Iterable[str] = (),
    min_acc: float | None = None,
    accuracies: dict[str, float] | None = None,
    top: int = 10,
    exhaustive_limit: int = EXHAUSTIVE_LIMIT,
) -> pd.DataFrame:
    """Rank k-member candidate ensembles by mean pairwise symmetrized TM (lower: attacks transfer less among them).

    ``require``: members every candidate must contain; ``min_acc`` with ``accuracies`` (model -> clean accuracy
    in [0, 1]): drop candidates below the floor. Exhaustive when there are at most ``exhaustive_limit`` (50,000)
    subsets, else greedy growth from every pool member. Returns the best ``top`` sets: rank, ensemble, members, score (mean pairwise
    TM), max_pair_tm, undefined_pairs (pairs with no TM in either direction, left out of the mean and ranked
    last), and min_acc / mean_acc of the members when accuracies are given.
    """
    sym = symmetrize(tm_matrix)
    names = list(sym.index)
    k = _whole("k (the ensemble size)", k, 2)
    top = _whole("top", top, 1)
    required = list(dict.fromkeys(str(r) for r in require))
    unknown = [r for r in required if r not in names]
    if unknown:
        raise TrendError(f"Required member {unknown[0]!r} is not in the TM matrix ({', '.join(names)}).")
    if len(required) > k:
        raise TrendError(f"{len(required)} required members do not fit an ensemble of {k}.")
    pool = list(names)
    if min_acc is not None:
        floor = _fraction("min_acc", min_acc)
        missing = [n for n in names if accuracies is None or n not in accuracies]
        if missing or accuracies is None:
            raise TrendError(f"An accuracy floor needs the clean accuracy of every model; {missing[0]!r} has none.")
        for r in required:
            if accuracies[r] < floor:
                raise TrendError(
                    f"Required member {r!r} has clean accuracy {accuracies[r]:.4f}, below the floor {floor}."
                )
        pool = [n for n in names if accuracies[n] >= floor]
    if len(pool) < k:
        raise TrendError(f"Only {len(pool)} models pass the filters, fewer than the ensemble size {k}.")
    index = {n: i for i, n in enumerate(names)}
    matrix = sym.to_numpy()
    fixed = [index[r] for r in required]
    free = [index[n] for n in pool if n not in required]
    count = math.comb(len(free), k - len(fixed))
    if count <= exhaustive_limit:
        combos = np.array([fixed + list(c) for c in itertools.combinations(free, k - len(fixed))], dtype=int)
        method = "exhaustive"
    else:
        combos = _greedy_sets(matrix, fixed, free, k)
        method = "greedy"
    combos = np.sort(combos, axis=1)  # members listed in the matrix's order
    score, worst, undefined = _score_sets(matrix, combos)
    order = np.lexsort((score, undefined > 0))[:top]
    rows = []
    for rank, i in enumerate(order, start=1):
        members = tuple(names[j] for j in combos[i])
        row = {
            "rank": rank,
            "ensemble": " + ".join(members),
            "members": members,
            "score": float(score[i]),
            "max_pair_tm": float(worst[i]),
            "undefined_pairs": int(undefined[i]),
        }
        if accuracies is not None and all(m in accuracies for m in members):
            accs = [float(accuracies[m]) for m in members]
            row.update(min_acc=min(accs), mean_acc=float(np.mean(accs)))
        rows.append(row)
    frame = pd.DataFrame(rows).set_index("rank")
    frame.attrs["method"], frame.attrs["candidates"] = method, int(len(combos))
    return frame


def _score_sets(matrix: np.ndarray, combos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and max of the defined pairwise values of each set (rows of ``combos``), and the undefined count."""
    pairs = list(itertools.combinations(range(combos.shape[1]), 2))
    values = np.stack([matrix[combos[:, i], combos[:, j]] for i, j in pairs], axis=1)
    defined = ~np.isnan(values)
    total = np.where(defined, values, 0.0).sum(axis=1)
    n_defined = defined.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_defined > 0, total / np.maximum(n_defined, 1), np.inf)
    worst = np.where(n_defined > 0, np.where(defined, values, -np.inf).max(axis=1), np.nan)
    return mean, worst, len(pairs) - n_defined


def _greedy_sets(matrix: np.ndarray, fixed: list[int], free: list[int], k: int) -> np.ndarray:
    """One greedy set per starting member: add the model with the lowest mean TM to those chosen, until k."""
    filled = np.where(np.isnan(matrix), 1.0, matrix)  # an unknown pair counts as fully transferable
    starts = free if len(fixed) < k else [None]
    sets = []
    for start in starts:
        chosen = list(fixed) + ([start] if start is not None else [])
        rest = [j for j in free if j not in chosen]
        while len(chosen) < k:
            costs = filled[np.ix_(rest, chosen)].mean(axis=1)
            chosen.append(rest.pop(int(np.argmin(costs))))
        sets.append(tuple(sorted(chosen)))
    return np.array(list(dict.fromkeys(sets)), dtype=int)


def _whole(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise TrendError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    return int(value)


def _fraction(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TrendError(f"{name} must be a number in [0, 1], got {value!r}.") from None
    if not 0 <= number <= 1:
        raise TrendError(f"{name} is a fraction in [0, 1] (e.g. 0.9 for 90%), got {value!r}.")
    return number


def growing_ensembles(
    tm_matrix: pd.DataFrame,
    max_size: int,
    start: str,
    require: Sequence[str] = (),
    min_acc: float | None = None,
    accuracies: dict[str, float] | None = None,
) -> list[list[str]]:
    """``[start]``, then the best TREND set of every size 2..``max_size`` that contains ``start`` and ``require``
    (labels as in ``tm_matrix``): the ensembles of a growth curve (the paper's Fig. 9)."""
    required = list(dict.fromkeys([start, *require]))
    sets = [[start]]
    for k in range(max(2, len(required)), int(max_size) + 1):
        best = select_ensembles(tm_matrix, k, require=required, min_acc=min_acc, accuracies=accuracies, top=1)
        sets.append(list(best["members"].iloc[0]))
    return sets


def growth_start(pool: Sequence[str], required: Sequence[str], accuracies: dict[str, float]) -> str:
    """The first member of a growth curve: the first required model, else the pool's most accurate one."""
    if required:
        return required[0]
    return max(pool, key=lambda m: accuracies.get(m, 0.0))
