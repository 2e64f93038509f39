"""`trend reproduce`: the paper's experiments end to end, with a findings report (HTML, CSVs, findings.json).

Stages are kept in the store as they finish, so an interrupted run continues where it stopped and a finished
one is read back in seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trend_core.cli.common import add_common
from trend_core.config.profiles import PROFILES
from trend_core.errors import TrendError
from trend_core.reproduce.choices import DATASETS, SCALES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce the paper's findings end to end and write a report",
        description="Train the models it needs, run every stage (baseline accuracy, transfer "
        "tables, TM matrices, boundary, ensemble attacks, TREND, TM(eps) fit, audit) "
        "and write DIR/report.html, DIR/*.csv and DIR/findings.json.",
    )
    p.add_argument(
        "--dataset",
        nargs="+",
        default=["digits"],
        help=f"one or more of {', '.join(DATASETS)} (default digits); with several, each is reproduced in turn and "
        "finding 5 (weight/activation effects depend on the dataset) compares them",
    )
    p.add_argument(
        "--scale",
        default="quick",
        help=f"one of {', '.join(SCALES)}: mini is a smoke test, quick takes minutes on a CPU for "
        "digits, full uses the paper's step counts and every test image (default quick)",
    )
    p.add_argument("--profile", default="paper", help=f"one of {', '.join(PROFILES)} (default paper)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the attacks' random starts and the vote's tie-breaks (default 0); rerun with another seed "
        "to see which verdicts are stable",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="where to write the report (default ./trend-reproduce-DATASET-SCALE; with several datasets one "
        "subfolder each)",
    )
    add_common(p)
    p.set_defaults(func=cmd_reproduce)


def check_out_dir(text: str) -> Path:
    """The output folder: created if missing; an existing file or an unwritable place is an error."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise TrendError(f"--out {text} is a file, not a folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrendError(f"Cannot create the output folder {text} ({exc.strerror}).") from None
    if not os.access(path, os.W_OK):
        raise TrendError(f"The output folder {text} is not writable.")
    return path


def cmd_reproduce(args: argparse.Namespace) -> int:
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.data.datasets import load_dataset
    from trend_core.models.zoo import Zoo
    from trend_core.reproduce import settings_for, write_outputs
    from trend_core.reproduce.findings import findings_frame, judge_across
    from trend_core.runtime.devices import resolve_device
    from trend_core.storage.store import get_store

    datasets = list(dict.fromkeys(args.dataset))
    all_settings = [settings_for(name, args.scale, args.profile, seed=args.seed) for name in datasets]
    device = resolve_device(args.device)
    for settings in all_settings:
        load_dataset(settings.dataset)  # missing CIFAR files fail here, before any training
    out = check_out_dir(args.out or f"trend-reproduce-{'+'.join(datasets)}-{all_settings[0].scale}")
    zoo = Zoo(args.home)
    reports = []
    for settings in all_settings:
        reports.append(_run_one(settings, zoo, get_store(args.home), device, len(all_settings) > 1))
    reports = judge_across(reports)
    # local: keeps this torch-free module's start-up light
    import pandas as pd

    for settings, report in zip(all_settings, reports):
        folder = out / settings.dataset if len(reports) > 1 else out
        paths = write_outputs(report, check_out_dir(str(folder)))
        for note in report["run"]["notes"]:
            print(f"note: {note}", file=sys.stderr)
        frame = findings_frame(report["findings"])[["finding", "verdict", "measured"]]
        if len(reports) > 1:
            print(f"== {settings.dataset}")
        with pd.option_context("display.width", 200, "display.max_colwidth", 150):
            print(frame.to_string(index=False))
        run = report["run"]
        print(
            f"wall time {run['wall_seconds']:.1f} s (stages from the store: {', '.join(run['from_store']) or 'none'}); "
            f"wrote {len(paths)} files to {folder} (open {folder / 'report.html'})",
            file=sys.stderr,
        )
    return 0


def _run_one(settings, zoo, store, device, label: bool) -> dict:
    """One dataset's reproduction with a progress bar on stderr."""
    # local: keeps this torch-free module's start-up light
    from tqdm import tqdm

    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.config.datasets import get_info

    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.reproduce import run_reproduce
    from trend_core.training.threads import cpu_threads, training_threads

    bar = tqdm(
        total=1000,
        desc=f"reproduce {settings.dataset}" if label else "reproduce",
        unit="‰",
        leave=False,
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {elapsed} {postfix}",
    )

    def progress(fraction: float, message: str) -> None:
        bar.n = int(1000 * fraction)
        bar.set_postfix_str(message[:90])
        bar.refresh()

    try:  # small images (digits, MNIST) attack on one CPU thread, as the dashboard's jobs do: measured on MNIST
        # (a smoke audit of Q2, 10 images, load ~5 on 2 cores) 2.0 s on one thread against 312 s on two
        with cpu_threads(training_threads(get_info(settings.dataset), device)):
            return run_reproduce(settings, zoo, store, device, progress=progress)
    finally:
        bar.close()
