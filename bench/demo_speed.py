"""Live-demo speed: the transfer runs the demo shows, one process against sources attacked one per core.

    python bench/demo_speed.py                 # 3 repetitions of each, about 4 minutes on an idle 2-core CPU
    python bench/demo_speed.py --repeats 5 --only default
    git worktree add /tmp/trend-before 551ed27 && python bench/demo_speed.py --before-repo /tmp/trend-before

Times the CLI end to end (start-up included, no cache), as a user runs it: ``trend transfer --models ...
--attack pgd --no-cache`` on all 359 digits test images, PGD-40 at the dataset's eps, with ``--executor local``
(one process: "before") and without (the default: worker processes for the sources when a second core is
idle, or always with --force-workers: "after"), or, with ``--before-repo``, the CLI of an older checkout (the issue's "today": 551ed27) against this one's
default, the two alternated so that load
from other jobs on a shared machine falls on both. Two runs: the Transferability page's default (the first four
models of the digits preset: FP, Q8, Q4, Q2) and the whole 12-model digits preset matrix. Prints the median and
range of each, the ratio after/before of the medians and, beside each run, the CPU time of the CLI and its
workers (the work done; it should not grow) and the load average. On a machine shared with other busy sessions
the kernel's per-session fair share (autogroup) caps what a second core can give: time it idle. The preset is
trained on first use into $TREND_HOME (default a bench home under the temp folder; minutes, once).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trend_core.config.presets import PRESETS  # noqa: E402

RUNS = {"default": PRESETS["digits"][:4], "preset": PRESETS["digits"]}
CLI = [sys.executable, "-m", "trend_core"]  # what the `trend` command runs (each checkout's own entry point)
MODES = {"before (one process)": ["--executor", "local"], "after (default)": []}


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _time(models: list[str], extra: list[str], env: dict, repo: Path = REPO) -> tuple[float, float]:
    env = {**env, "PYTHONPATH": str(repo) + os.pathsep + env.get("PYTHONPATH", "")}
    command = [*CLI, "transfer", "--models", *models, "--attack", "pgd"]
    command += ["--no-cache", "--device", "cpu", *extra]
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=repo, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    now = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CLI and its worker processes
    return wall, (now.ru_utime - used.ru_utime) + (now.ru_stime - used.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=sorted(RUNS), default=None)
    parser.add_argument(
        "--force-workers",
        action="store_true",
        help="after: two workers even while other sessions keep the cores busy (TREND_SOURCE_WORKERS=2)",
    )
    parser.add_argument(
        "--before-repo",
        type=Path,
        default=None,
        help="before: this older checkout's CLI (one process, its own defaults) instead of --executor local",
    )
    args = parser.parse_args()
    modes = {mode: (extra, REPO) for mode, extra in MODES.items()}
    if args.before_repo is not None:
        modes = {f"before ({args.before_repo.name})": ([], args.before_repo.resolve()), "after (default)": ([], REPO)}
    env = dict(os.environ)
    if args.force_workers:
        env["TREND_SOURCE_WORKERS"] = "2"  # (ignored by the before runs: --executor local)
    env.setdefault("TREND_HOME", str(Path(tempfile.gettempdir()) / "trend-bench-demo"))
    print(f"TREND_HOME={env['TREND_HOME']}; training the digits preset if missing ...", flush=True)
    subprocess.run(
        [*CLI, "zoo", "preset", "digits"],
        env={**env, "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = {args.only: RUNS[args.only]} if args.only else RUNS
    rows = []
    for name, models in runs.items():
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for rep in range(1, args.repeats + 1):
            for mode, (extra, repo) in modes.items():
                before = _load()
                seconds, cpu = _time(list(models), extra, env, repo)
                times[mode].append(seconds)
                line = f"{name:8s} rep {rep} {mode:22s} {seconds:6.1f} s wall {cpu:6.1f} s CPU"
                print(f"{line}   load {before} -> {_load()}", flush=True)
        medians = {mode: statistics.median(ts) for mode, ts in times.items()}
        before_m, after_m = medians.values()
        rows.append((name, len(models), times, medians, after_m / before_m))
    print("\nrun       models  mode                    median   range          after/before")
    for name, count, times, medians, ratio in rows:
        for i, mode in enumerate(modes):
            ts = times[mode]
            tail = f"{ratio:.2f}x" if i == 1 else ""
            print(f"{name:9s} {count:6d}  {mode:22s} {medians[mode]:6.1f} s  {min(ts):5.1f}-{max(ts):5.1f} s    {tail}")
    print(f"load average at the end: {_load()}")


if __name__ == "__main__":
    main()
