"""Presenter-first benchmark: how long a presenter's click waits for the device while the demo warm-up runs.

    python bench/presenter_click.py              # click into each warm-up run after it ran 2 s
    python bench/presenter_click.py --delay 5

The store is a temporary folder whose models/ is a copy of the test zoo (as bench/app_pages.py makes it). The
warm-up (trend_core.service.warmup.warm_defaults: every page's default run, as background jobs) runs on a real
job manager with its device worker; once each warm-up run has run ``--delay`` seconds, a tiny foreground job (the
click) is submitted on the same device. Reported per run: how long the click waited to start (the warm-up run
yields at its next progress report; before background jobs it waited for the whole run), how the run ended, and
the warm-up's total time (yielded runs are done again).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from app_pages import prepare_home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=2.0, help="seconds a warm-up run runs before the click")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="trend-presenter-click-"))
    os.environ["TREND_HOME"] = str(home)
    prepare_home(home)

    from trend_core.models.zoo import Zoo
    from trend_core.runtime.jobs import JobManager, JobStatus
    from trend_core.service.warmup import warm_defaults
    from trend_core.storage.store import get_store

    manager, jobs = JobManager(sync=False), []
    start = time.time()

    def warm() -> None:
        jobs.extend(warm_defaults(Zoo(home), get_store(home), "digits", device="cpu", manager=manager))

    thread = threading.Thread(target=warm, daemon=True)
    thread.start()
    clicked: set[str] = set()
    waits = []
    while thread.is_alive():
        for run in manager.jobs(active_only=True):
            if not run.background or run.status is not JobStatus.RUNNING or run.elapsed < args.delay:
                continue
            if run.title in clicked:
                continue
            clicked.add(run.title)
            ran, asked = run.elapsed, time.time()
            click = manager.submit(f"click {len(clicked)}", lambda job: job.progress(1.0), title="click", device="cpu")
            click.wait()
            run.wait()
            waits.append(click.started - asked)
            print(
                f"{run.title[:58]:58s} ran {ran:4.1f} s: the click started after {waits[-1]:5.2f} s; "
                f"the run {'yielded' if run.yielded else run.status.value}",
                flush=True,
            )
        time.sleep(0.05)
    done = sum(job.status is JobStatus.DONE for job in jobs)
    print(f"warm-up: {done} of {len(jobs)} runs done in {time.time() - start:.1f} s")
    if waits:
        print(f"click waited: median {statistics.median(waits):.2f} s, max {max(waits):.2f} s ({len(waits)} clicks)")


if __name__ == "__main__":  # (worker processes started from a fork server import this file again)
    main()
