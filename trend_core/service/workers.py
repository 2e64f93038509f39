"""The dashboard's worker processes, started in the background when the app opens, so that the first transfer
run, ensemble sweep or TM(eps) fit of a small-image zoo attacks its sources side by side at once instead of
first waiting a second or two for the fork server (``experiments.parallel_sources``)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

_started = False
_lock = threading.Lock()


def prepare_workers() -> bool:
    """Start the worker pool in a background thread, once per process; returns whether this call started it."""
    global _started
    with _lock:
        if _started:
            return False
        _started = True
    threading.Thread(target=_prestart, name="trend-prestart-workers", daemon=True).start()
    return True


def _prestart() -> None:
    try:
        # local: torch loads in this background thread, never while a page is drawn
        from trend_core.experiments.parallel_sources import prestart_workers

        workers = prestart_workers()
        log.info("worker processes ready: %d", workers)
    except Exception as exc:  # the runs start their own pool when they need one
        log.warning("could not start worker processes ahead of the first run: %s", exc)
