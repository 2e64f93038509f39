"""Attack results cached by content: an attack on one model at several eps runs once, and every run that asks
for it again (a transfer run, an ensemble sweep, a TM fit, an audit) reads the store instead."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from trend_core.attacks.base import Attack, AttackResult
from trend_core.experiments.transfer_keys import CACHE_VERSION, attack_keys
from trend_core.storage.store import content_key, model_fingerprint


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
        stored = store_outcomes(store, [keys[slot] for slot in missing], outcomes)
        entries.update(zip(missing, stored))
    return [entries[slot] for slot in range(len(keys))], not missing


def store_outcomes(store: Any, keys: Sequence[str], outcomes: Sequence[AttackResult]) -> list[dict]:
    """Write each attack result under its key (images under ``key + ":x_adv"``, first: a summary implies its
    images); returns the entries, images included."""
    entries = []
    for key, outcome in zip(keys, outcomes):
        entry = {
            "clean_correct": outcome.clean_correct,
            "success": outcome.success,
            "l2": outcome.l2,
            "linf": outcome.linf,
        }
        store.set(key + ":x_adv", outcome.x_adv)
        store.set(key, entry)
        entries.append({**entry, "x_adv": outcome.x_adv})
    return entries
