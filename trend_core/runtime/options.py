"""How a run runs, apart from what it measures: the image limit, device, cache, executor, progress, cancel and
profile every runner (``run_transfer``, ``robustness_sweep``, ``measure_tm``/``fit_tm``, ``run_audit``) shares.

A runner takes the experiment-defining arguments (models, attack, eps, sources/targets) explicitly and the rest
as ``options=RunOptions(...)``, or as the same names written as keywords (``run_transfer(models, "pgd",
limit=200)``), folded in by ``run_options`` so that the two spellings mean one thing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from trend_core.errors import TrendError
from trend_core.runtime.progress import Progress


@dataclass(frozen=True)
class RunOptions:
    """``limit``: the first N evaluation images (None: all); ``device``: "auto", "cpu", "cuda"...; ``cache``: see
    ``storage.store.resolve_cache`` (None: nothing written to disk); ``executor``: where attacks run
    (``runtime.executors``; None: as configured); ``progress(fraction, message)``; ``cancel()`` -> True stops the
    run where it supports it; ``profile``: paper or authors."""

    limit: int | None = None
    device: Any = "auto"
    cache: Any = None  # a storage.store.Cache (runtime sits beside storage, so it does not import the type)
    executor: Any = None
    progress: Progress | None = None
    cancel: Callable[[], bool] | None = None
    profile: str = "paper"


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(RunOptions))


def run_options(options: RunOptions | None, keywords: dict[str, Any], runner: str = "This run") -> RunOptions:
    """``options`` (default ``RunOptions()``) with the run options a caller wrote as keywords put in; a keyword
    that is no run option is one TrendError sentence (as Python's own TypeError would say, but naming the
    options)."""
    unknown = [name for name in keywords if name not in OPTION_NAMES]
    if unknown:
        raise TrendError(f"{runner} takes no argument {unknown[0]!r}; its run options are: {', '.join(OPTION_NAMES)}.")
    if options is not None and not isinstance(options, RunOptions):
        raise TrendError(f"options must be a RunOptions, got {type(options).__name__}.")
    return dataclasses.replace(options or RunOptions(), **keywords)
