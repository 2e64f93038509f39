"""Transfer runs: attack each source once, evaluate every target on its adversarial images.

Cost is k attacks + k^2 batched forward passes, never k^2 attacks. Each source's adversarial images and each
target's predictions on them are cached in the results store by content (model weights, attack parameters,
eps, the exact images), so an identical rerun runs no attack and an interrupted sweep resumes at the first
source not yet done. The result and its views are in ``transfer_result``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, overload

import torch
import torch.nn as nn

from trend_core.attacks.base import Attack, predict
from trend_core.attacks.registry import attack_parameters, make_attack
from trend_core.attacks.stacked import run_stacked, stackable_attack, stacked_groups, stacking_wanted
from trend_core.config.labels import model_labels
from trend_core.config.profiles import check_profile
from trend_core.errors import TrendError
from trend_core.experiments.attack_cache import attack_cached, store_outcomes
from trend_core.experiments.eval_data import evaluation_data
from trend_core.experiments.parallel_sources import attack_in_workers, movable, source_workers
from trend_core.experiments.transfer_keys import (
    CACHE_VERSION,
    TransferCancelled,
    attack_identity,
    attack_keys,
    report_source,
)
from trend_core.experiments.transfer_result import TransferDetails, TransferResult, build_result
from trend_core.experiments.units import prefetch_transfer
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.executors import get_executor
from trend_core.runtime.options import RunOptions, run_options
from trend_core.storage.store import content_key, model_fingerprint, resolve_cache


@overload
def run_transfer(
    models: Sequence[nn.Module],
    attack: Attack | str,
    split: str = ...,
    *,
    data: Any = ...,
    sources: Sequence | None = ...,
    targets: Sequence | None = ...,
    epsilons: None = ...,
    options: RunOptions | None = ...,
    **keywords: Any,
) -> TransferResult: ...
@overload
def run_transfer(
    models: Sequence[nn.Module],
    attack: Attack | str,
    split: str = ...,
    *,
    data: Any = ...,
    sources: Sequence | None = ...,
    targets: Sequence | None = ...,
    epsilons: Sequence[float | None] = ...,
    options: RunOptions | None = ...,
    **keywords: Any,
) -> list[TransferResult]: ...
def run_transfer(
    models,
    attack,
    split="test",
    *,
    data=None,
    sources=None,
    targets=None,
    epsilons=None,
    options=None,
    **keywords,
):
    """TM of every ordered (source, target) pair; one TransferResult, or one per eps when ``epsilons`` is given.

    ``models``: TrendModels or any pixels-in/logits-out nn.Module (labelled by ``.spec.short_name``, ``.name``
    or ``model<i>``). ``data``: see ``eval_data.evaluation_data`` (by default the models' dataset ``split``).
    ``sources`` / ``targets``: subsets of the models (labels, spec names, positions or the modules).
    Minimum-norm attacks (CW, DeepFool) run once for all ``epsilons`` and are clipped to each.
    ``options`` (or its fields as keywords: limit, device, cache, executor, progress, cancel, profile; see
    ``runtime.options.RunOptions``): ``cache`` None (default) writes nothing to disk, True keeps results in the
    shared store under $TREND_HOME, so a cached rerun runs no attack; ``progress(fraction, message)`` after each
    source; ``profile`` (paper or authors) configures an attack given by name (CW's abort rule).

    >>> result = run_transfer([model_a, model_b], PGD(eps=0.1), limit=200)   # doctest: +SKIP
    >>> result.matrix()                                                      # doctest: +SKIP
    """
    opts = run_options(options, keywords, "run_transfer")
    progress, cancel = opts.progress, opts.cancel
    models = list(models)
    if not models:
        raise TrendError("Pick at least one model for a transfer run.")
    if not all(isinstance(m, nn.Module) for m in models):
        raise TrendError("Every model of a transfer run must be a torch nn.Module (pixels in [0, 1] -> logits).")
    attack = _as_attack(attack, opts.profile)
    eps_list = [attack.eps] if epsilons is None else list(epsilons)
    if not eps_list:
        raise TrendError("Give at least one eps.")
    eps_list = [attack.eps_for(models[0], e) for e in eps_list]  # None: the models' dataset default
    labels = model_labels(models)
    src = _select(sources, models, labels, "source")
    tgt = _select(targets, models, labels, "target")
    dev = resolve_device(opts.device)
    for model in models:
        model.to(dev)
    x, y = (t.clone() if t.is_inference() else t for t in evaluation_data(models, data, split, opts.limit))
    x, y = x.to(dev), y.to(dev)  # (inference-mode tensors could not enter the attacks' autograd)
    store = resolve_cache(opts.cache)

    data_key = content_key(CACHE_VERSION, "data", x, y)
    fps = [model_fingerprint(m) for m in models]
    per_eps: list[dict] = [
        {name: {} for name in ("correct", "success", "l2", "linf", "pred", "keys")} for _ in eps_list
    ]

    runner = get_executor(opts.executor)
    if runner.distributed:  # attacks and evaluations run as units elsewhere; the loop below then reads the store
        prefetch_transfer(
            runner,
            models,
            fps,
            labels,
            src,
            tgt,
            attack,
            eps_list,
            x,
            y,
            data_key,
            store,
            opts.device,
            progress,
            cancel,
        )
        progress = cancel = None
    keys = {s: attack_keys(attack, eps_list, data_key, fps[s]) for s in src}
    to_attack = [s for s in src if not all(store.has(k) for k in keys[s])]
    per_source = 1 if attack.minimum_norm else len(eps_list)  # units of work per source
    stacking = stackable_attack(attack) and stacking_wanted(dev)  # CUDA: same-architecture sources at once
    workers = (
        0 if runner.distributed or stacking else source_workers(len(to_attack) * per_source, x, dev, opts.executor)
    )
    remote = [s for s in to_attack if movable(models[s], attack)] if workers else []
    workers = min(workers, len(remote) * per_source) if len(remote) * per_source >= 2 else 0
    finished: list[int] = []

    def finish(s: int, attacked_elsewhere: bool = False) -> None:
        from_cache = _transfer_source(s, tgt, models, fps, attack, eps_list, x, y, data_key, store, per_eps)
        finished.append(s)
        report_source(progress, len(finished), len(src), labels[s], from_cache and not attacked_elsewhere)

    if workers:  # small images on the CPU: the sources to attack run one per core (``parallel_sources``)
        local = [s for s in src if s not in remote]
        attack_in_workers(
            workers,
            models,
            remote,
            attack,
            eps_list,
            x,
            y,
            keys,
            store,
            lambda s: finish(s, True),
            local,
            finish,
            cancel,
        )
        _in_source_order(per_eps, src, tgt)
    else:
        stack_group_of = _stacked_sources(src, models, fps, attack, eps_list, x, y, data_key, store, dev)
        for s in src:
            if cancel is not None and cancel():
                raise TransferCancelled(f"The transfer run was cancelled after {len(finished)} of {len(src)} sources.")
            fresh = stack_group_of(s)  # on CUDA: s's same-architecture group, attacked together, is now in the store
            finish(s, fresh)

    correct = dict(per_eps[0]["correct"])  # the sources' clean verdicts came with their attacks
    for t in tgt:
        if t not in correct:
            key = content_key(CACHE_VERSION, "clean", fps[t], data_key)
            correct[t] = _cached(store, key, lambda t=t: predict(models[t], x)).cpu() == y.cpu()
    involved = list(dict.fromkeys(src + tgt))
    specs = {labels[i]: getattr(getattr(models[i], "spec", None), "name", None) for i in involved}
    split_name = split if data is None or isinstance(data, str) or hasattr(data, "tensors") else "custom"
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
            build_result(
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


def _stacked_sources(
    src: list[int], models, fps, attack: Attack, eps_list, x, y, data_key: str, store, device
) -> Callable[[int], bool]:
    """``attack_group_of(s)``: attack source s's group of same-architecture sources not yet in the store as one
    stacked PGD (``attacks.stacked``), store each result under its own keys, and say whether s was among them.

    Stacking is on where ``stacking_wanted(device)`` (CUDA by default) and the attack is plain PGD; otherwise,
    and for sources alone in their group, this does nothing and the source loop attacks one at a time."""
    if not (stackable_attack(attack) and stacking_wanted(device)):
        return lambda s: False
    keys = {s: attack_keys(attack, eps_list, data_key, fps[s]) for s in src}
    missing = [s for s in src if not all(store.has(k) for k in keys[s])]
    groups = [[missing[i] for i in g] for g in stacked_groups(attack, [models[s] for s in missing]) if len(g) > 1]
    group_of = {s: g for g in groups for s in g}
    done: set[int] = set()

    def attack_group_of(s: int) -> bool:
        group = group_of.get(s)
        if group is None or s in done:
            return s in done
        for member, outcomes in zip(group, run_stacked(attack, [models[m] for m in group], x, y, eps_list)):
            store_outcomes(store, keys[member], outcomes)
        done.update(group)
        return True

    return attack_group_of


def _in_source_order(per_eps: list[dict], src: list[int], tgt: list[int]) -> None:
    """Put each accumulator in the order of the one-process loop (sources finish in any order in workers)."""
    rank = {s: i for i, s in enumerate(src)}
    rank_t = {t: i for i, t in enumerate(tgt)}
    for acc in per_eps:
        for name, values in acc.items():
            if name == "pred":
                acc[name] = dict(sorted(values.items(), key=lambda kv: (rank[kv[0][0]], rank_t[kv[0][1]])))
            else:
                acc[name] = dict(sorted(values.items(), key=lambda kv: rank[kv[0]]))


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
