"""Where units of work run: local threads (the default) or Ray tasks on a cluster.

An executor takes a plain function and its arguments and returns a ``concurrent.futures.Future``; engine
functions (``trend_core.training.units``, ``trend_core.experiments.units``) submit units of work to it and hand
what comes back to the driver, which writes the zoo and the store itself, so workers never touch its files. Chosen by ``--executor local|ray`` on the CLI, or
by ``TREND_EXECUTOR`` / ``TREND_RAY_ADDRESS`` (``auto``: a running cluster, ``ray://host:10001``: a remote
one, ``local``: start Ray on this machine); setting only the address selects Ray.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, InvalidStateError, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator

from trend_core.errors import TrendError

EXECUTOR_CHOICES = ("local", "ray")
TASK_RETRIES = 3  # Ray reruns a task whose worker died this many times; a TrendError is never retried
POLL_SECONDS = 0.25  # how often a driver waiting on units checks its cancel callback

_default_name: str | None = None
_cache: dict[tuple, Executor] = {}
_lock = threading.Lock()


class Executor:
    """Runs ``fn(*args, **kwargs)`` somewhere and hands back a Future; ``distributed`` says whether off-process."""

    name = "executor"
    distributed = False

    def submit(self, fn: Callable[..., Any], *args: Any, gpu: bool = False, **kwargs: Any) -> Future:
        raise NotImplementedError

    def put(self, value: Any) -> Any:
        """A handle to pass ``value`` to many tasks without copying it each time (the value itself locally)."""
        return value

    def cancel(self, future: Future) -> None:
        future.cancel()

    def status(self) -> dict:
        """What the sidebar shows: the executor's name and, for a cluster, its nodes, GPUs, CPUs and tasks."""
        return {"executor": self.name}


class LocalExecutor(Executor):
    """A small thread pool in this process (one worker by default: the laptop behaviour, one job at a time)."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="trend-unit")

    def submit(self, fn: Callable[..., Any], *args: Any, gpu: bool = False, **kwargs: Any) -> Future:
        return self._pool.submit(fn, *args, **kwargs)

    def status(self) -> dict:
        return {"executor": self.name, "workers": self.workers}


class ProcessExecutor(Executor):
    """Worker processes on this machine, each set up by ``initializer``; for CPU-bound units that one thread
    cannot share out (small-image attacks). ``method``: "fork" (the default where the OS can: workers start in
    milliseconds with this process's imports; only safe from the main thread), "forkserver" (workers forked from
    a clean single-threaded server that imported ``preload`` once: safe from any thread, a second or two to start
    the server) or "spawn". Units and their results travel pickled. A worker that dies breaks the pool: its units
    fail with one sentence and the next run starts a fresh pool."""

    name = "processes"

    def __init__(
        self,
        workers: int,
        initializer: Callable[[], None] | None = None,
        method: str | None = None,
        preload: tuple[str, ...] = (),
    ):
        self.workers = max(1, int(workers))
        methods = multiprocessing.get_all_start_methods()
        if method not in methods:
            method = "fork" if "fork" in methods else "spawn"
        self.method = method
        context = multiprocessing.get_context(method)
        if method == "forkserver" and preload:
            context.set_forkserver_preload(list(preload))  # type: ignore[attr-defined]  # (forkserver contexts)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=initializer)

    def submit(self, fn: Callable[..., Any], *args: Any, gpu: bool = False, **kwargs: Any) -> Future:
        return self._pool.submit(fn, *args, **kwargs)

    def broken(self) -> bool:
        """Whether a worker died (the pool then runs nothing more)."""
        return bool(getattr(self._pool, "_broken", False))

    def shutdown(self, wait: bool = False) -> None:
        """Drop the queued units and end the workers (``wait``: until they have exited)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def status(self) -> dict:
        return {"executor": self.name, "workers": self.workers, "start": self.method}


def process_failure(exc: BaseException) -> BaseException:
    """A worker process that died (killed for memory, a crash) as one sentence; any other error unchanged."""
    if isinstance(exc, BrokenProcessPool):
        return TrendError(
            "A worker process stopped unexpectedly (out of memory?); run again, or with executor='local' "
            "(--executor local) to stay in one process."
        )
    return exc


class RayExecutor(Executor):
    """Ray core tasks: each unit asks for one CPU, or one GPU where the cluster has GPUs and the device allows."""

    name = "ray"
    distributed = True

    def __init__(self, address: str | None = None):
        try:
            # local: optional dependency, imported only when used
            import ray
        except ImportError:
            raise TrendError("The Ray executor needs Ray: install it with `pip install -e .[ray]`.") from None
        self._ray = ray
        self.address = address or "local"
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address,
                    ignore_reinit_error=True,
                    log_to_driver=False,
                    include_dashboard=False,
                    configure_logging=False,
                )
            except Exception as exc:  # ConnectionError, ValueError for a bad address, RuntimeError, ...
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise TrendError(f"Could not start or reach the Ray cluster at {self.address!r}: {first}") from None
        self._remote = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False)(_run_unit)
        self._refs: dict[int, Any] = {}
        self._in_flight = 0
        self._lock = threading.Lock()

    def has_gpus(self) -> bool:
        return self._ray.cluster_resources().get("GPU", 0) > 0

    def submit(self, fn: Callable[..., Any], *args: Any, gpu: bool = False, **kwargs: Any) -> Future:
        wants_gpu = gpu and self.has_gpus()
        ref = self._remote.options(num_cpus=1, num_gpus=1 if wants_gpu else 0).remote(fn, *args, **kwargs)
        outer: Future = Future()
        with self._lock:
            self._in_flight += 1
            self._refs[id(outer)] = ref

        def settle(inner: Future) -> None:
            with self._lock:
                self._in_flight -= 1
                self._refs.pop(id(outer), None)
            if outer.cancelled():
                return
            try:
                outcome = inner.result()
            except BaseException as exc:  # a worker that kept dying, a cancelled task, a bug in a unit
                outcome = _Failure(None, _plain_error(exc))
            try:
                if isinstance(outcome, _Failure):
                    outer.set_exception(outcome.error or TrendError(outcome.message))
                else:
                    outer.set_result(outcome)
            except InvalidStateError:  # cancelled meanwhile
                pass

        ref.future().add_done_callback(settle)
        return outer

    def put(self, value: Any) -> Any:
        return self._ray.put(value)

    def cancel(self, future: Future) -> None:
        with self._lock:
            ref = self._refs.get(id(future))
        if ref is not None:
            try:
                self._ray.cancel(ref, force=False)
            except Exception:  # already finished or gone: nothing to stop
                pass
        future.cancel()

    def status(self) -> dict:
        ray = self._ray
        total, free = ray.cluster_resources(), ray.available_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        busy = int(round(total.get("CPU", 0) - free.get("CPU", 0)))
        with self._lock:
            in_flight = self._in_flight
        running = min(in_flight, busy)
        return {
            "executor": self.name,
            "address": self.address,
            "nodes": len(nodes),
            "gpus": int(total.get("GPU", 0)),
            "cpus": int(total.get("CPU", 0)),
            "running": running,
            "queued": in_flight - running,
            "busy_cpus": busy,
        }


class _Failure:
    """A unit's TrendError, returned (not raised) so that Ray does not retry it and no traceback reaches the user."""

    def __init__(self, message: str | None, error: BaseException | None = None):
        self.message, self.error = message, error


def _run_unit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The body of every Ray task: run the unit; a TrendError comes back as a _Failure with its one-line message."""
    try:
        return fn(*args, **kwargs)
    except TrendError as exc:
        return _Failure(str(exc))


def _plain_error(exc: BaseException) -> BaseException:
    """A Ray system error (a worker that kept dying, a lost node) as one sentence; a unit's own bug keeps its
    traceback (Ray's RayTaskError carries it)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, TrendError):
        return TrendError(str(cause))
    if cause is None and type(exc).__module__.startswith("ray"):
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return TrendError(f"A Ray task failed ({type(exc).__name__}){': ' + first if first else ''}")
    return exc


# ----------------------------------------------------------------------------- the driver's side of units
def worker_device(device: Any) -> str:
    """The device name to send to workers: a resolved torch.device says nothing about a worker, so it is auto."""
    return device if isinstance(device, str) else "auto"


def finished_units(
    executor: Executor,
    futures: dict[Future, Any],
    cancel: Callable[[], bool] | None = None,
    cancelled: Callable[[], BaseException] | None = None,
) -> Iterator[tuple[Future, Any]]:
    """(future, result) as each unit finishes; a failure, or ``cancel()`` turning true (raising ``cancelled()``),
    stops the units still pending and raises."""
    pending = set(futures)
    while pending:
        if cancel is not None and cancel():
            cancel_units(executor, pending)
            raise cancelled() if cancelled is not None else RuntimeError("The units were cancelled.")
        done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        for future in done:
            try:
                value = future.result()
            except BaseException:
                cancel_units(executor, pending)
                raise
            yield future, value


def cancel_units(executor: Executor, futures: Any) -> None:
    """Ask ``executor`` to drop each of ``futures`` (queued ones never run; running ones stop where they can)."""
    for future in list(futures):
        executor.cancel(future)


# ----------------------------------------------------------------------------- choosing one
def explicitly_local(executor: Any) -> bool:
    """Whether the local executor was asked for by name (``executor="local"``, a LocalExecutor, --executor local,
    TREND_EXECUTOR=local) rather than left to the default: runners that would use worker processes then stay in
    this process."""
    if isinstance(executor, Executor):
        return isinstance(executor, LocalExecutor)
    if executor:
        return _check_name(executor) == "local"
    if _default_name:
        return _default_name == "local"
    return os.environ.get("TREND_EXECUTOR", "").strip().lower() == "local"


def set_default(name: str | None) -> None:
    """Make ``name`` ("local" or "ray") this process's executor, over TREND_EXECUTOR (the CLI's --executor)."""
    global _default_name
    _default_name = _check_name(name) if name else None


def chosen_name() -> str:
    """The executor asked for: --executor, else TREND_EXECUTOR, else ray when TREND_RAY_ADDRESS is set, else local."""
    if _default_name:
        return _default_name
    env = os.environ.get("TREND_EXECUTOR", "").strip().lower()
    if env:
        return _check_name(env)
    return "ray" if os.environ.get("TREND_RAY_ADDRESS", "").strip() else "local"


def get_executor(executor: Executor | str | None = None) -> Executor:
    """An Executor: the one given, one by name, or the one chosen by the CLI / environment (one per process)."""
    if isinstance(executor, Executor):
        return executor
    name = _check_name(executor) if executor else chosen_name()
    address = os.environ.get("TREND_RAY_ADDRESS", "").strip() or "local"
    key = (name, address if name == "ray" else None)
    with _lock:
        if key not in _cache:
            _cache[key] = RayExecutor(address) if name == "ray" else LocalExecutor()
        return _cache[key]


def _check_name(name: str) -> str:
    name = str(name).strip().lower()
    if name not in EXECUTOR_CHOICES:
        raise TrendError(f"Unknown executor {name!r}; choose local or ray (TREND_EXECUTOR, --executor).")
    return name
