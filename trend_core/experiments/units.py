"""Units of work for an Executor in transfer runs and attack sweeps, and the driver side that schedules them
and writes what they return (training units are ``trend_core.training.units``).

A unit is a plain function of plain inputs: attack one model at some eps (returns the attack's per-image
outcomes and images), predict one model on some images. Models travel as a spec plus safetensors bytes (rebuilt
on the worker; any other module is sent as an object). Only the driver writes to the results store, each result
once it is complete, so a lost worker or a killed driver never leaves a partial entry and a rerun resumes from
what is stored.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
from safetensors.torch import load, save

from trend_core.attacks.base import predict
from trend_core.config.specs import ModelSpec
from trend_core.experiments.transfer_keys import CACHE_VERSION, TransferCancelled, attack_keys, report_source
from trend_core.nn.bpda import BackwardChoice, with_backward
from trend_core.nn.build import TrendModel, build_model
from trend_core.nn.vote import MajorityVote
from trend_core.runtime.devices import resolve_device
from trend_core.runtime.executors import POLL_SECONDS, Executor, cancel_units, finished_units, worker_device
from trend_core.runtime.progress import Progress
from trend_core.storage.store import content_key, model_fingerprint


# ----------------------------------------------------------------------------- models as plain data
def pack_model(model: nn.Module) -> dict:
    """A model as plain data for a worker: spec + safetensors bytes, an ensemble of packed members, or the module."""
    spec = getattr(model, "spec", None)
    if isinstance(model, TrendModel) and isinstance(spec, ModelSpec):
        backward, training = None, model.training
        if isinstance(model.preprocess, BackwardChoice):  # a BPDA variant (``with_backward``): its plain model
            # (the wrapper's own train flag is a new module's default: the shared network's mode is the model's)
            backward, training = model.preprocess.mode, model.net.training
            model = TrendModel(model.preprocess.inner, model.net, spec)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        package = {"kind": "spec", "spec": spec.to_dict(), "weights": save(state), "training": training}
        return {**package, "backward": backward} if backward else package
    if isinstance(model, MajorityVote):
        return {
            "kind": "vote",
            "members": [pack_model(m) for m in model.members],
            "seed": model.seed,
            "names": list(model.names),
            "profile": model.profile,
        }
    return {"kind": "module", "module": model}


def unpack_model(package: dict, device: torch.device) -> nn.Module:
    """The module ``pack_model`` described, on ``device``, in the mode it was packed in."""
    if package["kind"] == "spec":
        model = build_model(ModelSpec.from_dict(package["spec"]))
        model.load_state_dict(load(package["weights"]))
        model = model.to(device).train(package["training"])
        return with_backward(model, package["backward"]) if package.get("backward") else model
    if package["kind"] == "vote":
        members = [unpack_model(p, device) for p in package["members"]]
        return MajorityVote(members, package["seed"], package["names"], package.get("profile", "paper"))
    return package["module"].to(device)


# ----------------------------------------------------------------------------- units (run on workers)
def attack_unit(
    package: dict,
    attack,
    data: tuple[torch.Tensor, torch.Tensor],
    epsilons: Sequence[float | None],
    device: str = "auto",
    speedup: bool = False,
) -> list[dict]:
    """``attack.run`` on one model at ``epsilons``: per eps the outcomes per image and the images (on the CPU).
    ``speedup``: iterate on the model's inference twin, as ``attack_cached`` does (same images bit for bit)."""
    dev = resolve_device(device)
    model = unpack_model(package, dev)
    x, y = data
    outcomes = attack.run(model, x.to(dev), y.to(dev), list(epsilons), speedup=speedup)
    return [
        {
            "clean_correct": o.clean_correct.cpu(),
            "success": o.success.cpu(),
            "l2": o.l2.cpu(),
            "linf": o.linf.cpu(),
            "x_adv": o.x_adv.cpu(),
        }
        for o in outcomes
    ]


def traced_attack_unit(
    package: dict,
    attack,
    data: tuple[torch.Tensor, torch.Tensor],
    epsilons: Sequence[float | None],
    device: str = "auto",
    speedup: bool = False,
) -> tuple[list[dict], torch.Tensor | None]:
    """``attack_unit`` for an ensemble attack that reports each step's sign agreement with every member
    (``EnsemblePGD``'s ``on_step``): its entries and that agreement averaged over the steps (None if none came)."""
    seen: list[torch.Tensor] = []
    attack._on_step = lambda step, agreement: seen.append(agreement)  # (this process's copy of the attack)
    entries = attack_unit(package, attack, data, epsilons, device, speedup)
    return entries, torch.stack(seen).float().mean(dim=0) if seen else None


def predict_unit(package: dict, images: Sequence[torch.Tensor], device: str = "auto") -> list[torch.Tensor]:
    """One model's predicted classes on each batch of images (a target evaluated on a source's images)."""
    dev = resolve_device(device)
    model = unpack_model(package, dev)
    return [predict(model, batch.to(dev)).cpu() for batch in images]


# ----------------------------------------------------------------------------- driver side
def prefetch_transfer(
    executor: Executor,
    models: Sequence[nn.Module],
    fingerprints: Sequence[str],
    labels: Sequence[str],
    sources: Sequence[int],
    targets: Sequence[int],
    attack,
    epsilons: Sequence[float | None],
    x: torch.Tensor,
    y: torch.Tensor,
    data_key: str,
    store,
    device: Any = "auto",
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> None:
    """Put every source's attack results and every target's predictions on them into ``store``, as units.

    Attacks run one per source and eps (one per source for minimum-norm attacks, which serve every eps at once);
    a target's evaluation starts as soon as its source's images are stored. ``progress(fraction, message)``
    hears of each finished source. Afterwards ``run_transfer``'s own loop finds everything in the store.
    """
    dev = worker_device(device)
    gpu = dev != "cpu"
    handles: dict[int, Any] = {}
    data = executor.put((x.detach().cpu(), y.detach().cpu()))

    def handle(i: int):
        if i not in handles:
            handles[i] = executor.put(pack_model(models[i]))
        return handles[i]

    pending: dict[Future, tuple] = {}
    outstanding = {s: 0 for s in sources}
    computed = {s: False for s in sources}
    plan: dict[int, tuple[list[str], list[dict]]] = {}

    def submit_predictions(s: int, slots: list[int], images: list[torch.Tensor]) -> None:
        pred_keys = plan[s][1]
        batches = dict(zip(slots, images))
        for t in [t for t in targets if t != s]:
            wanted = [slot for slot in slots if not store.has(pred_keys[slot][t])]
            if wanted:
                future = executor.submit(predict_unit, handle(t), [batches[slot] for slot in wanted], dev, gpu=gpu)
                pending[future] = ("pred", s, wanted, t)
                outstanding[s] += 1

    for s in sources:
        keys = attack_keys(attack, epsilons, data_key, fingerprints[s])
        pred_keys = [
            {t: content_key(CACHE_VERSION, "pred", fingerprints[t], key) for t in targets if t != s} for key in keys
        ]
        plan[s] = (keys, pred_keys)
        need_attack, ready = [], []
        for slot, key in enumerate(keys):
            preds_missing = not all(store.has(k) for k in pred_keys[slot].values())
            if not store.has(key) or (preds_missing and not store.has(key + ":x_adv")):
                need_attack.append(slot)
            elif preds_missing:
                ready.append(slot)
        if ready:
            submit_predictions(s, ready, [store.get(keys[slot] + ":x_adv") for slot in ready])
        groups = [need_attack] if attack.minimum_norm and need_attack else [[slot] for slot in need_attack]
        for group in groups:
            future = executor.submit(attack_unit, handle(s), attack, data, [epsilons[i] for i in group], dev, gpu=gpu)
            pending[future] = ("attack", s, group, None)
            outstanding[s] += 1
        computed[s] = bool(need_attack or ready)

    finished = 0
    for s in sources:
        if outstanding[s] == 0:
            finished += 1
            report_source(progress, finished, len(sources), labels[s], True)
    while pending:
        if cancel is not None and cancel():
            cancel_units(executor, pending)
            raise TransferCancelled(f"The transfer run was cancelled after {finished} of {len(sources)} sources.")
        done, _ = wait(list(pending), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        for future in done:
            kind, s, slots, t = pending.pop(future)
            try:
                value = future.result()
            except BaseException:
                cancel_units(executor, pending)
                raise
            keys, pred_keys = plan[s]
            if kind == "attack":
                for slot, entry in zip(slots, value):
                    summary = {k: entry[k] for k in ("clean_correct", "success", "l2", "linf")}
                    store.set(keys[slot] + ":x_adv", entry["x_adv"])  # images first: a summary implies its images
                    store.set(keys[slot], summary)
                submit_predictions(s, slots, [entry["x_adv"] for entry in value])
            else:
                for slot, pred in zip(slots, value):
                    store.set(pred_keys[slot][t], pred)
            outstanding[s] -= 1
            if outstanding[s] == 0:
                finished += 1
                report_source(progress, finished, len(sources), labels[s], not computed[s])


def prefetch_attacks(
    executor: Executor,
    jobs: Sequence[tuple[nn.Module, Any] | tuple[nn.Module, Any, Sequence[float | None]]],
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float | None],
    store,
    device: Any = "auto",
    progress: Progress | None = None,
    speedup: bool = False,
    traces: dict[str, torch.Tensor] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> None:
    """Store each (model, attack)'s results at every eps not yet stored (a (model, attack, epsilons) job: at its
    own eps), one unit per sweep point (model, attack, eps); ``cancel()`` turning true (polled every half second)
    stops the units still pending and raises TransferCancelled, the finished ones stored.

    Keys are ``transfer.attack_keys``, so ``attack_cached`` then reads them instead of attacking. ``speedup``: as
    in ``attack_unit`` (worker processes on this machine pass True, to match ``attack_cached`` bit for bit).
    ``traces``: ensemble attacks also record their per-member sign agreement, averaged over the steps, into it
    under the point's key (``traced_attack_unit``), as the attack in this process reports it through ``on_step``.
    """
    dev = worker_device(device)
    data_key = content_key(CACHE_VERSION, "data", x, y)
    data = executor.put((x.detach().cpu(), y.detach().cpu()))
    futures: dict[Future, tuple[list[str], str]] = {}
    for model, attack, *own in jobs:
        eps_here = list(own[0]) if own else list(epsilons)
        keys = attack_keys(attack, eps_here, data_key, model_fingerprint(model))
        missing = [slot for slot, key in enumerate(keys) if not (store.has(key) and store.has(key + ":x_adv"))]
        if not missing:
            continue
        package = executor.put(pack_model(model))
        groups = [missing] if attack.minimum_norm else [[slot] for slot in missing]
        label = attack_label(attack, model)
        unit = attack_unit if traces is None else traced_attack_unit
        for group in groups:
            future = executor.submit(
                unit, package, attack, data, [eps_here[i] for i in group], dev, speedup, gpu=dev != "cpu"
            )
            futures[future] = ([keys[i] for i in group], label)
    total = len(futures)

    def cancelled() -> TransferCancelled:
        return TransferCancelled(f"The attacks were cancelled after {n} of {total}; those finished are stored.")

    n = 0
    for n, (future, value) in enumerate(finished_units(executor, futures, cancel, cancelled), start=1):
        keys, label = futures[future]
        if traces is not None:
            value, trace = value
            if trace is not None:
                traces[keys[0]] = trace
        for key, entry in zip(keys, value):
            store.set(key + ":x_adv", entry["x_adv"])
            store.set(key, {k: entry[k] for k in ("clean_correct", "success", "l2", "linf")})
        if progress is not None:
            progress(n / total, f"{n}/{total} attacks done ({label})")


def attack_label(attack, model: nn.Module) -> str:
    """How progress names one attack of a sweep: "A-GD: attacking the ensemble", "A-GD: attacking FP-s0 alone"."""
    return f"{getattr(attack, 'name', 'attack')}: attacking {attacked_label(model)}"


def attacked_label(model: nn.Module) -> str:
    """How progress names what an attack runs on, as the sweep's own loop does: "the ensemble", "FP-s0 alone"
    (a one-member vote: a member attacked alone), or the model's label."""
    members = getattr(model, "names", None)
    if isinstance(members, list) and members:
        return f"{members[0]} alone" if len(members) == 1 else "the ensemble"
    return str(getattr(model, "name", None) or type(model).__name__)
