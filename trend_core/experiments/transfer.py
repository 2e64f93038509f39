"""Transfer runs: attack each source once, evaluate every target on its adversarial images.

Cost is k attacks + k^2 batched forward passes, never k^2 attacks. Each source's adversarial images and each
target's predictions on them are cached in the results store by content (model weights, attack parameters,
eps, the exact images), so an identical rerun runs no attack and an interrupted sweep resumes at the first
source not yet done. For every ordered pair (source s, target t), on the images both classify correctly:

    n_common     images both s and t classify correctly
    generated    f_ss: those the attack on s turned adversarial for s
    transferred  f_st: those of f_ss that also fool t
    tm           f_st / f_ss  (NaN when f_ss = 0: undefined, and reported in ``warnings``); 1 on the diagonal
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, overload

import pandas as pd
import torch
import torch.nn as nn

from trend_core.attacks.base import Attack, check_eps, predict
from trend_core.attacks.registry import attack_parameters, make_attack
from trend_core.config.labels import model_labels  # noqa: F401  (re-exported: callers import it from here too)
from trend_core.config.profiles import check_profile
from trend_core.data.datasets import load_dataset
from trend_core.data.image_checks import check_images
from trend_core.errors import TrendError
from trend_core.experiments.transfer_keys import (  # noqa: F401  (re-exported: the transfer run's public names)
    CACHE_VERSION,
    TransferCancelled,
    TransferStep,
    attack_identity,
    attack_keys,
)
from trend_core.experiments.units import prefetch_transfer
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.executors import get_executor
from trend_core.storage.store import UNSET, Cache, cache_argument, content_key, model_fingerprint, resolve_cache

PAIR_COLUMNS = ["source", "target", "n_common", "generated", "transferred", "tm", "mean_l2", "mean_linf"]
STAT_COLUMNS = {
    "generated": "generated",
    "transferred": "transferred",
    "transfer_pct": "transfer_pct",
    "l2": "mean_l2",
    "linf": "mean_linf",
}


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


# ----------------------------------------------------------------------------- running
@overload
def run_transfer(
    models: Sequence[nn.Module],
    attack: Attack | str,
    split: str = ...,
    limit: int | None = ...,
    data: Any = ...,
    cache: Cache = ...,
    progress: Callable[[TransferStep], None] | None = ...,
    device: Any = ...,
    sources: Sequence | None = ...,
    targets: Sequence | None = ...,
    epsilons: None = ...,
    cancel: Callable[[], bool] | None = ...,
    store: Any = ...,
    profile: str = ...,
    executor: Any = ...,
) -> TransferResult: ...
@overload
def run_transfer(
    models: Sequence[nn.Module],
    attack: Attack | str,
    split: str = ...,
    limit: int | None = ...,
    data: Any = ...,
    cache: Cache = ...,
    progress: Callable[[TransferStep], None] | None = ...,
    device: Any = ...,
    sources: Sequence | None = ...,
    targets: Sequence | None = ...,
    epsilons: Sequence[float | None] = ...,
    cancel: Callable[[], bool] | None = ...,
    store: Any = ...,
    profile: str = ...,
    executor: Any = ...,
) -> list[TransferResult]: ...
def run_transfer(
    models,
    attack,
    split="test",
    limit=None,
    data=None,
    cache=None,
    progress=None,
    device="auto",
    sources=None,
    targets=None,
    epsilons=None,
    cancel=None,
    store=UNSET,
    profile="paper",
    executor=None,
):
    """TM of every ordered (source, target) pair; one TransferResult, or one per eps when ``epsilons`` is given.

    ``models``: TrendModels or any pixels-in/logits-out nn.Module (labelled by ``.spec.short_name``, ``.name``
    or ``model<i>``). ``data``: (x, y) tensors or a DatasetBundle; by default the models' dataset ``split``.
    ``cache``: None (default) writes nothing to disk; True keeps results in the shared store under $TREND_HOME,
    a folder in the store there, a Store in that store (see ``store.resolve_cache``); a cached rerun runs no
    attack. (``store=`` is the old, deprecated name: None meant the shared store.)
    ``sources`` / ``targets``: subsets of the models (labels, spec names, positions or the modules).
    Minimum-norm attacks (CW, DeepFool) run once for all ``epsilons`` and are clipped to each. ``profile``
    (paper or authors) configures an attack given by name (CW's abort rule); the models carry their own.
    ``executor``: where the attacks and evaluations run (``trend_core.runtime.executors``; default: as chosen by
    --executor / TREND_EXECUTOR, local threads unless Ray was asked for).

    >>> result = run_transfer([model_a, model_b], PGD(eps=0.1), limit=200)   # doctest: +SKIP
    >>> result.matrix()                                                      # doctest: +SKIP
    """
    cache = cache_argument(cache, store)
    models = list(models)
    if not models:
        raise TrendError("Pick at least one model for a transfer run.")
    if not all(isinstance(m, nn.Module) for m in models):
        raise TrendError("Every model of a transfer run must be a torch nn.Module (pixels in [0, 1] -> logits).")
    attack = _as_attack(attack, profile)
    eps_list = [attack.eps] if epsilons is None else list(epsilons)
    if not eps_list:
        raise TrendError("Give at least one eps.")
    eps_list = [check_eps(e, required=not attack.minimum_norm, norm=attack.norm) for e in eps_list]
    labels = model_labels(models)
    src = _select(sources, models, labels, "source")
    tgt = _select(targets, models, labels, "target")
    dev = resolve_device(device)
    for model in models:
        model.to(dev)
    x, y = (t.clone() if t.is_inference() else t for t in evaluation_data(models, data, split, limit))
    x, y = x.to(dev), y.to(dev)  # (inference-mode tensors could not enter the attacks' autograd)
    store = resolve_cache(cache)

    data_key = content_key(CACHE_VERSION, "data", x, y)
    fps = [model_fingerprint(m) for m in models]
    per_eps: list[dict] = [
        {name: {} for name in ("correct", "success", "l2", "linf", "pred", "keys")} for _ in eps_list
    ]

    runner = get_executor(executor)
    if runner.distributed:  # attacks and evaluations run as units elsewhere; the loop below then reads the store
        prefetch_transfer(
            runner, models, fps, labels, src, tgt, attack, eps_list, x, y, data_key, store, device, progress, cancel
        )
        progress = cancel = None
    for done, s in enumerate(src, start=1):
        if cancel is not None and cancel():
            raise TransferCancelled(f"The transfer run was cancelled after {done - 1} of {len(src)} sources.")
        from_cache = _transfer_source(s, tgt, models, fps, attack, eps_list, x, y, data_key, store, per_eps)
        if progress is not None:
            progress(TransferStep(done, len(src), labels[s], from_cache))

    correct = dict(per_eps[0]["correct"])  # the sources' clean verdicts came with their attacks
    for t in tgt:
        if t not in correct:
            key = content_key(CACHE_VERSION, "clean", fps[t], data_key)
            correct[t] = _cached(store, key, lambda t=t: predict(models[t], x)).cpu() == y.cpu()
    involved = list(dict.fromkeys(src + tgt))
    specs = {labels[i]: getattr(getattr(models[i], "spec", None), "name", None) for i in involved}
    split_name = split if data is None or hasattr(data, "tensors") else "custom"
    x_cpu, y_cpu = x.cpu(), y.cpu()
    results = []
    for eps, acc in zip(eps_list, per_eps):
        details = TransferDetails(
            x_cpu,
            y_cpu,
            {labels[i]: correct[i] for i in involved},
            {labels[s]: v for s, v in acc["success"].items()},
            {(labels[s], labels[t]): v for (s, t), v in acc["pred"].items()},
            _adv_loader(store, {labels[s]: k for s, k in acc["keys"].items()}),
            {labels[i]: models[i] for i in src},
            {labels[s]: v for s, v in acc["l2"].items()},
        )
        norms = ({labels[s]: v for s, v in acc["l2"].items()}, {labels[s]: v for s, v in acc["linf"].items()})
        results.append(
            _build_result(
                details,
                norms,
                [labels[i] for i in src],
                [labels[i] for i in tgt],
                describe_attack(attack),
                eps,
                split_name,
                specs,
            )
        )
    return results if epsilons is not None else results[0]


def _transfer_source(
    s: int, tgt: list[int], models, fps, attack: Attack, eps_list, x, y, data_key: str, store, per_eps: list[dict]
) -> bool:
    """Attack source ``s`` (or read it from the store) and predict every other target on its images, per eps.

    Fills each eps's accumulator; returns whether nothing had to be computed."""
    evaluated = [t for t in tgt if t != s]  # a source's verdict on its own images is its attack's success
    keys = attack_keys(attack, eps_list, data_key, fps[s])
    pred_keys = [{t: content_key(CACHE_VERSION, "pred", fps[t], key) for t in evaluated} for key in keys]
    need_images = [not all(store.has(k) for k in slot.values()) for slot in pred_keys]
    entries, from_cache = attack_cached(models[s], attack, x, y, eps_list, store, data_key, fps[s], need_images)
    for acc, entry, key, slot_keys, eps in zip(per_eps, entries, keys, pred_keys, eps_list):
        acc["keys"][s] = key
        for name in ("correct", "success", "l2", "linf"):
            acc[name][s] = entry["clean_correct" if name == "correct" else name].cpu()
        for t in evaluated:
            pred = store.get(slot_keys[t])
            if pred is None:
                if "x_adv" not in entry:  # a stored prediction was there but unreadable: fetch (or redo) the images
                    again, _ = attack_cached(models[s], attack, x, y, [eps], store, data_key, fps[s], [True])
                    entry = {**entry, "x_adv": again[0]["x_adv"]}
                pred = predict(models[t], entry["x_adv"])
                store.set(slot_keys[t], pred)
            acc["pred"][(s, t)] = pred.cpu()
    return from_cache and not any(need_images)


def attack_cached(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float | None],
    store: Any,
    data_key: str | None = None,
    fingerprint: str | None = None,
    need_images: Sequence[bool] | None = None,
) -> tuple[list[dict], bool]:
    """``_attack_cached`` under the store's lock for these keys (when it has locks), so two processes asking for
    the same attack at once compute it once: the second waits and then reads the first one's results."""
    lock = getattr(store, "lock", None)
    if lock is None:
        return _attack_cached(model, attack, x, y, epsilons, store, data_key, fingerprint, need_images)
    data_key = data_key or content_key(CACHE_VERSION, "data", x, y)
    fingerprint = fingerprint or model_fingerprint(model)
    with lock(content_key("attack-lock", attack_keys(attack, epsilons, data_key, fingerprint))):
        return _attack_cached(model, attack, x, y, epsilons, store, data_key, fingerprint, need_images)


def _attack_cached(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float | None],
    store,
    data_key: str | None = None,
    fingerprint: str | None = None,
    need_images: Sequence[bool] | None = None,
) -> tuple[list[dict], bool]:
    """``attack.run`` over the eps not yet in ``store``; returns (one entry per eps, whether all came from the store).

    An entry holds ``clean_correct``, ``success``, ``l2`` and ``linf`` per image, and ``x_adv`` when freshly
    computed or when ``need_images`` says so for that eps (the images are stored under ``key + ":x_adv"``, read only when needed).
    Entries are keyed by ``attack_keys``, so transfer runs, ensembles and curves share them.
    """
    data_key = data_key or content_key(CACHE_VERSION, "data", x, y)
    keys = attack_keys(attack, epsilons, data_key, fingerprint or model_fingerprint(model))
    need_images = list(need_images) if need_images is not None else [True] * len(keys)
    entries: dict[int, dict] = {}
    for slot, key in enumerate(keys):
        entry = store.get(key)
        if entry is not None and need_images[slot]:
            images = store.get(key + ":x_adv")
            entry = None if images is None else {**entry, "x_adv": images}
        if entry is not None:
            entries[slot] = entry
    missing = [slot for slot in range(len(keys)) if slot not in entries]
    if missing:
        outcomes = attack.run(model, x, y, [epsilons[slot] for slot in missing], speedup=True)
        for slot, outcome in zip(missing, outcomes):
            entry = {
                "clean_correct": outcome.clean_correct,
                "success": outcome.success,
                "l2": outcome.l2,
                "linf": outcome.linf,
            }
            store.set(keys[slot] + ":x_adv", outcome.x_adv)  # images first: a summary implies its images
            store.set(keys[slot], entry)
            entries[slot] = {**entry, "x_adv": outcome.x_adv}
    return [entries[slot] for slot in range(len(keys))], not missing


def describe_attack(attack: Attack) -> str:
    """The attack and its settings, without eps (a result carries its eps separately)."""
    params = attack_identity(attack)["params"]
    return f"{attack.name}(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


# ----------------------------------------------------------------------------- helpers
def _as_attack(attack: Any, profile: str = "paper") -> Attack:
    profile = check_profile(profile)
    if isinstance(attack, str):
        if profile != "paper" and "profile" in attack_parameters(attack):
            return make_attack(attack, profile=profile)
        return make_attack(attack)
    if not isinstance(attack, Attack):
        raise TrendError(
            f"A transfer run needs an Attack (e.g. PGD(eps=0.1)) or an attack name, got {type(attack).__name__}."
        )
    return attack


def _select(chosen, models, labels, role: str) -> list[int]:
    """Positions of the chosen models (all when None), in the order given."""
    if chosen is None:
        return list(range(len(models)))
    names = {getattr(getattr(m, "spec", None), "name", None): i for i, m in enumerate(models)}
    picked = []
    for item in chosen:
        if isinstance(item, nn.Module):
            matches = [i for i, m in enumerate(models) if m is item]
        elif isinstance(item, int) and not isinstance(item, bool):
            matches = [item] if 0 <= item < len(models) else []
        else:
            matches = [labels.index(item)] if item in labels else ([names[item]] if item in names else [])
        if not matches:
            raise TrendError(f"The {role} {item!r} is not one of the models in this run ({', '.join(labels)}).")
        if matches[0] not in picked:
            picked.append(matches[0])
    if not picked:
        raise TrendError(f"Pick at least one {role} model.")
    return picked


def evaluation_data(
    models: Sequence[nn.Module], data: Any, split: str, limit: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels a run evaluates: ``data`` (a DatasetBundle or an (x, y) pair), or the ``split`` of
    the models' common dataset; the first ``limit`` images, checked by ``check_images`` (finite pixels in
    [0, 1], labels among the models' classes, the models' image shape). Bad input raises a TrendError."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise TrendError(f"The image limit must be a positive whole number, got {limit!r}.")
    if data is None:
        found = {getattr(getattr(m, "spec", None), "dataset", None) for m in models}
        datasets = {str(d) for d in found if d is not None}
        if None in found:
            raise TrendError("Some models carry no spec, so their dataset is unknown; pass data=(x, y).")
        if len(datasets) > 1:
            raise TrendError(f"The models come from different datasets ({', '.join(sorted(datasets))}); pick one.")
        data = load_dataset(datasets.pop())
    if hasattr(data, "tensors") and callable(data.tensors):
        x, y = data.tensors(split, limit)
        return check_images(x, y, models, getattr(data, "info", None))
    try:
        x, y = data
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        count, labels = len(x), len(y)
    except (TypeError, ValueError, RuntimeError):
        raise TrendError("data must be an (images, labels) pair of tensors or a DatasetBundle.") from None
    if count != labels or count == 0:
        raise TrendError(f"data must hold the same positive number of images and labels, got {count} and {labels}.")
    return check_images(x[:limit], y[:limit], models)


def _cached(store, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    value = store.get(key)
    if value is None:
        value = compute()
        store.set(key, value)
    return value


def _adv_loader(store, keys: dict[str, str]) -> Callable[[str], torch.Tensor]:
    def load(source: str) -> torch.Tensor:
        images = store.get(keys[source] + ":x_adv")
        if images is None:
            raise TrendError("These adversarial images are no longer in the results store; run the transfer again.")
        return images

    return load


def _build_result(
    d: TransferDetails,
    norms,
    sources: list[str],
    targets: list[str],
    attack: str,
    eps: float | None,
    split: str,
    specs: dict,
) -> TransferResult:
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


# ----------------------------------------------------------------------------- seed groups (Tables II / III)
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
