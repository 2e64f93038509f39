"""Page runs against their `trend ...` commands: each page's default run (``trend_core.service.defaults``, the
runs the demo warm-up submits) through the page's own submit function, synchronously, and the equivalent
command it echoes (``job.meta["command"]``) as a subprocess, both with nothing cached, alternating.

    TREND_HOME=HOME python bench/page_vs_cli.py            # HOME: a zoo with the digits preset trained
    python bench/page_vs_cli.py --home HOME --rounds 2 --only transfer

The page side runs against a fresh empty results store (what a first click meets) in a job thread of a job
manager, as the dashboard runs it, after the worker processes the dashboard starts when it opens
(``service.workers``) are up; the command side gets ``--no-cache`` where the command has it (`trend boundary` caches nothing), one
subprocess per line of the echoed command (the TREND builder's audit echoes one `trend audit` per model).
Target: a page's run takes no longer than its command plus 20% (ratio <= 1.2).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NO_CACHE = {"transfer", "ensemble-attack", "fit-tm", "audit"}  # subcommands that take --no-cache
TARGET = 1.2


def time_page(run, zoo, cache_dir: Path):
    """Seconds of ``run``'s job from the page's submit call to its result, on an empty store; and the job."""
    from trend_core.runtime.jobs import JobManager, JobStatus
    from trend_core.storage.store import Store

    store = Store(cache_dir)
    start = time.perf_counter()
    job = run.job(zoo, store, JobManager(sync=False))  # in a job thread, as the dashboard runs it
    job.wait()
    seconds = time.perf_counter() - start
    if job.status is not JobStatus.DONE:
        raise SystemExit(f"{run.page}: the page's job {job.status.value}: {job.error}")
    return seconds, job


def time_command(command: str, cwd: Path, failed: list[str]) -> float:
    """Seconds of the echoed command (each line one subprocess), with --no-cache where it applies; a line the
    CLI refuses is noted in ``failed`` (and its seconds still count)."""
    total = 0.0
    for line in command.splitlines():
        args = shlex.split(line)
        if args[1] in NO_CACHE:
            args.append("--no-cache")
        start = time.perf_counter()
        done = subprocess.run(args, check=False, cwd=cwd, capture_output=True, text=True)
        total += time.perf_counter() - start
        if done.returncode != 0:
            failed.append(f"{line!r} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1][:160]}")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("TREND_HOME"), help="the zoo (default $TREND_HOME)")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--rounds", type=int, default=1, help="page/command pairs per run (median reported)")
    parser.add_argument("--only", nargs="*", default=None, help="runs whose page name contains one of these")
    args = parser.parse_args()
    if not args.home:
        raise SystemExit("Give --home (or set TREND_HOME) to a zoo with the preset trained.")
    os.environ["TREND_HOME"] = str(Path(args.home).resolve())  # the echoed commands then need no --home
    os.environ.setdefault("PYTHONPATH", str(REPO))

    from trend_core.experiments.parallel_sources import prestart_workers
    from trend_core.models.zoo import Zoo
    from trend_core.service.warmup import builder_runs, default_runs

    zoo = Zoo(args.home)
    runs = default_runs(zoo, args.dataset, device="cpu")
    prestart = threading.Thread(target=prestart_workers)  # as app.py does when the server starts
    prestart.start()
    prestart.join()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"Page runs against their commands on {args.home} ({args.dataset}); load average {load}")
    print(f"{'page run':<30}{'page s':>9}{'command s':>11}{'ratio':>7}  command")
    with tempfile.TemporaryDirectory() as tmp:
        index = 0
        while index < len(runs):
            run = runs[index]
            index += 1
            wanted = args.only is None or any(w.lower() in run.page.lower() for w in args.only)
            if not wanted and not run.page.startswith("TREND builder: transfer"):
                continue
            pages, commands, failed = [], [], []
            for _ in range(args.rounds if wanted else 1):
                cache = Path(tmp) / f"store-{index}-{len(pages)}"
                seconds, job = time_page(run, zoo, cache)
                pages.append(seconds)
                if wanted:
                    commands.append(time_command(job.meta["command"], Path(tmp), failed))
            if run.page.startswith("TREND builder: transfer"):
                runs[index:index] = builder_runs(job.result, zoo, args.dataset, device="cpu")
            if not wanted:
                continue
            page_s, command_s = statistics.median(pages), statistics.median(commands)
            first = job.meta["command"].splitlines()
            shown = first[0] + (f"  (+{len(first) - 1} more lines)" if len(first) > 1 else "")
            verdict = "" if page_s <= TARGET * command_s else "  SLOW"
            print(
                f"{run.page:<30}{page_s:>9.1f}{command_s:>11.1f}{page_s / command_s:>7.2f}  {shown}{verdict}",
                flush=True,
            )
            for note in dict.fromkeys(failed):
                print(f"{'':<30}note: {note}", flush=True)
    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
