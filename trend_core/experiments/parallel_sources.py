"""Transfer sources attacked side by side: small-image models on the CPU, one worker process per core.

A digits attack is a long chain of tiny ops that one thread runs best (``training.threads``), so a run with
several sources uses a second core only by attacking two sources at once. Each source's attack runs in a worker
process on one thread, on a copy of the model rebuilt from its spec and weights, with the same generator seed,
so its images are bit-identical to those of the one-process run; the parent writes the results store, predicts
the targets on each source's images as they arrive and reports progress, so store, progress and cancel behave as
in the one-process loop. Used when the device is the CPU, at least two attacks are to run, the images are
small, the machine has two cores or more and one of them is idle now, and the executor was not set to local by
name (``executor="local"``, ``--executor local``, ``TREND_EXECUTOR=local``). From the main thread (the CLI, a
script) the workers are forked from this process; from any other thread (a dashboard job) forking is not safe
(another thread may hold a lock the child would inherit locked), so they are forked from a fork server that
imported the attacks once: it starts once per process, a second or two, and is then as fast.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from typing import Callable, NoReturn, Sequence

import torch
import torch.nn as nn

from trend_core.attacks.base import Attack
from trend_core.experiments.transfer_keys import TransferCancelled
from trend_core.experiments.units import attack_unit, pack_model, prefetch_attacks
from trend_core.runtime.executors import ProcessExecutor, explicitly_local, finished_units, process_failure
from trend_core.runtime.progress import Progress
from trend_core.training.many import available_cores
from trend_core.training.threads import SMALL_IMAGE_PIXELS

_pool: ProcessExecutor | None = None
_pool_lock = threading.Lock()

# Relative cost of attacking a model of the zoo. Measured on the digits preset, PGD-40 on 359 images, one thread
# (CPU seconds): about 2 for every ResNet18 role (input quantization, halftoning, 2-bit weights, which the twin
# precomputes, cost nothing extra), 4.2 for 2-bit activations (no BatchNorm folding, a quantizer per layer),
# 0.8 for the VGG11-BN (its 8x8 maps shrink to 1x1 early). A model the estimate does not know counts 1.
_ACT_QUANT_COST = 2.0
MIN_IDLE_CORES = 0.7  # workers only when about one core is free beside this process
IDLE_SAMPLE_SECONDS = 0.1
RECENT_SECONDS = 5.0  # how old this module's import may be for idle_cores to look back to it
WORKERS_ENV = "TREND_SOURCE_WORKERS"  # set to a number to fix the worker count
_ARCH_COST = {"vgg": 0.4}


def source_workers(units: int, x: torch.Tensor, device: torch.device, executor: object) -> int:
    """Worker processes for ``units`` attacks (a source at one eps, or at all for a minimum-norm attack; 0: attack
    in this process, one after another)."""
    if units < 2 or device.type != "cpu" or explicitly_local(executor):
        return 0
    if x.dim() != 4 or x.shape[-1] * x.shape[-2] > SMALL_IMAGE_PIXELS:
        return 0  # larger images use several threads per attack already
    forced = os.environ.get(WORKERS_ENV, "").strip()
    if forced.isdigit():  # a fixed count, busy cores or not (benchmarks; 0 or 1: one process)
        return min(units, int(forced)) if int(forced) >= 2 else 0
    cores = available_cores()
    if cores < 2 or idle_cores() < MIN_IDLE_CORES:
        return 0
    return min(units, cores)


def idle_cores(window: float = IDLE_SAMPLE_SECONDS) -> float:
    """How many cores sat idle over the last ``window`` seconds (all of them where /proc/stat is not there).

    Busy cores are why: Linux shares the CPU between sessions (autogroup), so while other sessions keep the
    cores busy, two workers get no more time than one process, and lose some to the hand-off. Measured on the
    shared 2-core machine at load 5-8: the 4-model run 1.1-1.2x slower with workers, the 12-model one 1.05x.
    The first call with the default ``window`` within a few seconds of this module's import (a command that has
    just loaded its models) looks back over that time instead of waiting, this process's own CPU time counted as
    idle (it is the one asking), which saves the wait on a short run's critical path."""
    global _since_import
    try:
        recent, _since_import = _since_import, None
        if recent is not None and window == IDLE_SAMPLE_SECONDS:
            wall, own, first = recent
            elapsed = time.monotonic() - wall
            if IDLE_SAMPLE_SECONDS <= elapsed <= RECENT_SECONDS:
                idle = _idle_share(first, _cpu_times()) * available_cores()
                return min(float(available_cores()), idle + (time.process_time() - own) / elapsed)
        first = _cpu_times()
        time.sleep(window)
        return _idle_share(first, _cpu_times()) * available_cores()
    except (OSError, ValueError, IndexError):
        return float(available_cores())


def _idle_share(first: list[int], second: list[int]) -> float:
    """The share of the CPU time between two /proc/stat samples spent idle (idle and iowait)."""
    busy_idle = [b - a for a, b in zip(first, second)]
    total = sum(busy_idle)
    return (busy_idle[3] + busy_idle[4]) / total if total > 0 else 1.0


def _cpu_times() -> list[int]:
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:]]


try:  # (wall clock, own CPU time, /proc/stat) at import: see ``idle_cores``
    _since_import: tuple[float, float, list[int]] | None = (time.monotonic(), time.process_time(), _cpu_times())
except (OSError, ValueError):
    _since_import = None


def movable(model: nn.Module, attack: Attack) -> bool:
    """Whether a worker can rebuild ``model`` from plain data and receive ``attack`` (a model of the zoo, or a
    majority vote of such models; an attack that pickles)."""
    if not _plain(pack_model(model)):
        return False
    try:
        packed = pickle.dumps(attack)
    except Exception:  # a locally defined class or a lambda inside: it stays in this process
        return False
    # a class defined in a script or notebook (``__main__``) exists only in forked copies of this process
    return b"__main__" not in packed or start_method() == "fork"


def source_cost(model: nn.Module) -> float:
    """An estimate of how long attacking ``model`` takes, to hand the longest sources out first."""
    members = getattr(model, "members", None)
    if members is not None:
        return sum(source_cost(m) for m in members)
    spec = getattr(model, "spec", None)
    if spec is None:
        return 1.0
    arch = next((cost for prefix, cost in _ARCH_COST.items() if str(spec.arch).startswith(prefix)), 1.0)
    return arch * (_ACT_QUANT_COST if getattr(spec, "act_bits", 32) < 32 else 1.0)


def attack_in_workers(
    workers: int,
    models: Sequence[nn.Module],
    remote: Sequence[int],
    attack: Attack,
    epsilons: Sequence[float | None],
    x: torch.Tensor,
    y: torch.Tensor,
    keys: dict[int, list[str]],
    store,
    on_attacked: Callable[[int], None],
    local: Sequence[int] = (),
    on_local: Callable[[int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> None:
    """Attack each of ``remote`` in workers (longest first; one unit per eps unless minimum-norm), store its results under ``keys[s]`` and call
    ``on_attacked(s)`` as each arrives; meanwhile ``on_local(s)`` runs here for each of ``local``. A cancel
    stops at the next finished source (a worker finishes the attack it is on, unused)."""
    pool = _get_pool(workers)
    data = (x.detach().cpu(), y.detach().cpu())
    groups = [list(range(len(epsilons)))] if attack.minimum_norm else [[i] for i in range(len(epsilons))]
    futures = {}
    for s in sorted(remote, key=lambda s: -source_cost(models[s])):
        package = pack_model(models[s])
        for group in groups:  # one unit per eps (a TM(eps) curve's points), all at once for minimum-norm attacks
            eps = [epsilons[i] for i in group]
            futures[pool.submit(attack_unit, package, attack, data, eps, "cpu", speedup=True)] = (s, group)
    outstanding = {s: len(groups) for s in remote}
    done = 0

    def cancelled() -> TransferCancelled:
        total = len(remote) + len(local)
        return TransferCancelled(f"The transfer run was cancelled after {done} of {total} sources.")

    try:
        for s in local:
            if cancel is not None and cancel():
                raise cancelled()
            if on_local is not None:
                on_local(s)
            done += 1
        for future, entries in finished_units(pool, futures, cancel, cancelled):
            s, group = futures[future]
            for slot, entry in zip(group, entries):
                key = keys[s][slot]
                store.set(key + ":x_adv", entry["x_adv"])  # images first: a summary implies its images
                store.set(key, {k: entry[k] for k in ("clean_correct", "success", "l2", "linf")})
            outstanding[s] -= 1
            if outstanding[s] == 0:
                on_attacked(s)
                done += 1
    except BaseException as exc:
        for future in futures:
            pool.cancel(future)
        _give_up(pool, exc)


def prefetch_in_workers(
    points: Sequence[tuple[nn.Module, Attack] | tuple[nn.Module, Attack, Sequence[float | None]]],
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float | None],
    store,
    device: torch.device,
    executor: object,
    progress: Progress | None = None,
    traces: dict[str, torch.Tensor] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> bool:
    """Store every (model, attack) point's results at each eps (or at its own, for a (model, attack, epsilons)
    point) through worker processes, one unit per point and eps (an ensemble sweep's attacks, an audit's
    battery), when ``source_workers`` allows and every point can move; returns whether it did (the caller's loop
    then reads the store). ``traces`` and ``cancel``: see ``units.prefetch_attacks``."""
    units = sum(len(point[2]) if len(point) > 2 else len(epsilons) for point in points)
    workers = source_workers(units, x, device, executor)
    if not workers or not all(movable(point[0], point[1]) for point in points):
        return False
    pool = _get_pool(workers)
    try:
        prefetch_attacks(
            pool, points, x, y, epsilons, store, "cpu", progress, speedup=True, traces=traces, cancel=cancel
        )
    except BaseException as exc:
        _give_up(pool, exc)
    return True


def _give_up(pool: ProcessExecutor, exc: BaseException) -> NoReturn:
    """Re-raise ``exc`` (a dead worker as one sentence), dropping a broken pool so the next run starts afresh."""
    if pool.broken():
        _drop_pool(pool)
    plain = process_failure(exc)
    if plain is exc:
        raise exc
    raise plain from None


def _plain(package: dict) -> bool:
    if package["kind"] == "vote":
        return all(_plain(p) for p in package["members"])
    return package["kind"] == "spec"


def _one_thread() -> None:
    """Each worker attacks on one CPU thread (the pool's initializer)."""
    torch.set_num_threads(1)


def start_method() -> str:
    """How this thread may start workers: fork from the main thread, a fork server from any other."""
    return "fork" if threading.current_thread() is threading.main_thread() else "forkserver"


def _get_pool(workers: int) -> ProcessExecutor:
    """The process's pool of ``workers`` workers, started once and kept (a broken or other-sized one, or one
    started in a way this thread may not use, is replaced)."""
    global _pool
    method = start_method()
    with _pool_lock:
        if _pool is None or _pool.broken() or _pool.workers != workers or _pool.method != method:
            if _pool is not None:
                _pool.shutdown()
            _pool = ProcessExecutor(workers, _one_thread, method, preload=(__name__,))
        return _pool


def _drop_pool(pool: ProcessExecutor) -> None:
    if _pool is pool:
        stop_workers()


def worker_count() -> int:
    """The size of the worker pool now running (0: none); it is kept between runs until ``stop_workers``."""
    return 0 if _pool is None else _pool.workers


def prestart_workers() -> int:
    """Start the pool this thread would use (from a dashboard thread: the fork server and its workers) and wait
    until every worker is up, so that the first run does not wait for it; the number of workers, 0 where runs
    would stay in one process (one core, TREND_EXECUTOR=local or ray, TREND_SOURCE_WORKERS below 2)."""
    if explicitly_local(None) or os.environ.get("TREND_EXECUTOR", "").strip().lower() == "ray":
        return 0
    forced = os.environ.get(WORKERS_ENV, "").strip()
    workers = int(forced) if forced.isdigit() else available_cores()
    if workers < 2:
        return 0
    pool = _get_pool(workers)
    for future in [pool.submit(os.getpid) for _ in range(workers)]:
        future.result()
    return workers


def worker_start() -> str | None:
    """How the running pool's workers were started ("fork" or "forkserver"; None: no pool)."""
    return None if _pool is None else _pool.method


def stop_workers(wait: bool = False) -> None:
    """End the worker processes kept between runs (freeing their memory; ``wait``: until they have exited); the
    next run that needs them starts a fresh pool."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=wait)
            _pool = None
