"""Leaving the `trend` command quickly: once its work is stored and its output flushed, the interpreter's own
teardown (freeing torch's modules, tensors and native state: 0.4-0.8 s of a 5 s transfer run on a 2-core CPU) is
skipped. The exit handlers still run (logging, multiprocessing, Ray), and the worker processes are
stopped first; where another thread may still be working, the command exits the ordinary way."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn

SLOW_EXIT_ENV = "TREND_SLOW_EXIT"  # set to 1 for the interpreter's full teardown (e.g. to debug a leak at exit)


def others_running() -> bool:
    """Whether a thread other than the main one, and not a daemon, is still alive (it may be writing)."""
    main = threading.main_thread()
    return any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())


def leave(code: int) -> NoReturn:
    """Exit with ``code``: the exit handlers, then ``os._exit`` (no teardown), unless another thread still runs or
    $TREND_SLOW_EXIT is set, where it is the ordinary ``sys.exit``."""
    workers = sys.modules.get("trend_core.experiments.parallel_sources")
    if workers is not None:
        workers.stop_workers(wait=True)  # (their pool's manager thread is not a daemon: stopped, it ends)
    _flush()
    if os.environ.get(SLOW_EXIT_ENV, "").strip() not in ("", "0") or others_running():
        sys.exit(code)
    atexit._run_exitfuncs()  # logging's flush and close, multiprocessing's children, Ray's shutdown
    _flush()
    os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said on it
            pass
