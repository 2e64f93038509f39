"""Helpers shared by the CLI command modules: device and store options, model resolution, output."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from trend_core.config.profiles import DEFAULT_PROFILE, PROFILES
from trend_core.config.specs import ModelSpec
from trend_core.config.user_models import UserModelName, is_user_model_name, parse_user_model
from trend_core.config.version import VERSION
from trend_core.errors import TrendError
from trend_core.runtime.executors import get_executor
from trend_core.storage.homes import check_home, check_output_file, default_home, home_origin

if TYPE_CHECKING:  # pandas and the zoo (torch) load when a command runs, not for `trend --help`
    import pandas as pd

    from trend_core.models.zoo import Zoo

DEVICE_CHOICES = ("auto", "cpu", "cuda")  # = trend_core.runtime.devices.DEVICE_CHOICES, without importing torch
_THREADS_BEFORE: dict[str, int] = {}  # the thread count _set_threads replaced


def version() -> str:
    return VERSION


def add_common(parser: argparse.ArgumentParser) -> None:
    """--device, --home and --executor, accepted by every command."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="where to compute (default auto)")
    parser.add_argument("--home", default=None, help="store folder (default $TREND_HOME or ~/.cache/trend)")
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        default=None,
        help="where heavy work runs: local (this process only) or Ray tasks (default $TREND_EXECUTOR, else on "
        "this machine, small-image attacks of several sources one per core in worker processes)",
    )


def add_profile(parser: argparse.ArgumentParser) -> None:
    """--profile paper|authors, for the commands whose results depend on it."""
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="method profile: paper (default; the project's documented choices) or authors (the TREND "
        "authors' code: batch-range input quantization, their CIFAR std, batch 512, ...); "
        "models named without a profile part get this one",
    )


def profile_of(args: argparse.Namespace) -> str:
    """The profile a command runs under (the default when --profile is absent)."""
    return getattr(args, "profile", None) or DEFAULT_PROFILE


def zoo_from(args: argparse.Namespace, write: bool = True) -> Zoo:
    """The zoo under --home, else $TREND_HOME or the default, checked before any work wherever it comes from: a
    folder (or one that can be created) whose parts (models/, cache/, ...) are what they should be, and that
    this process can write when the command writes (``write``)."""
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.models.zoo import Zoo

    home = getattr(args, "home", None)
    origin = "--home" if home is not None else home_origin()
    return Zoo(check_home(home if home is not None else default_home(), write=write, origin=origin))


def check_outputs(**flags: str | None) -> None:
    """Refuse output files that cannot be written (``--csv=path`` given as csv=path), before any work."""
    for flag, path in flags.items():
        if path:
            check_output_file("--" + flag.replace("_", "-"), path)


def show_warnings_as_lines() -> None:
    """Print engine warnings (a damaged cache moved aside, a cached value failing its checksum) as one line."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"trend: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


def parse_names(names: list[str], profile: str | None = None) -> list[ModelSpec]:
    """Model names (or preset short-hands like 'preset:digits') to specs; bad names raise TrendError.

    With a ``profile`` other than the default, every spec at the default profile is given it (so
    ``--profile authors`` turns ``preset:digits`` into the authors' versions of the preset). An imported
    network's name is refused in one sentence (``parse_model_names`` takes those too)."""
    specs: list[ModelSpec] = []
    for found in parse_model_names(names, profile):
        if isinstance(found, UserModelName):
            raise TrendError(
                f"{found.name} is an imported network; this command takes model specs like "
                "digits/resnet18-w0.25/Q2/sgd/s0 (imported networks are loaded, never trained: `trend transfer`, `trend eval`, `trend fit-tm`, "
                "`trend boundary`, `trend ensemble-attack`, `trend audit`, `trend ensemble export` and `trend zoo` "
                "take them)."
            )
        specs.append(found)
    return specs


def parse_model_names(names: list[str], profile: str | None = None) -> list[ModelSpec | UserModelName]:
    """Like ``parse_names``, and names of imported networks (``user/<dataset>/<name>``) as UserModelNames
    (the profile does not apply to them: they carry their own preprocessing)."""
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.models.zoo import preset_specs

    found: list[ModelSpec | UserModelName] = []
    for name in names:
        if name.startswith("preset:"):
            found.extend(preset_specs(name.split(":", 1)[1]))
        elif is_user_model_name(name):
            found.append(parse_user_model(name))
        else:
            found.append(ModelSpec.parse(name))
    if profile and profile != DEFAULT_PROFILE:
        found = [
            s.replace(profile=profile) if isinstance(s, ModelSpec) and s.profile == DEFAULT_PROFILE else s
            for s in found
        ]
    return found


def load_models(args: argparse.Namespace, names: list[str], train_missing: bool = True) -> list:
    """Load (training any missing, with a progress bar) the models named on the command line; imported networks
    (``user/...``) are loaded, never trained."""
    zoo = zoo_from(args)
    specs = parse_model_names(names)
    for spec in specs:  # a missing or damaged imported network says so before any zoo model trains
        if isinstance(spec, UserModelName):
            zoo.metadata(spec)
    _set_threads(specs, args)
    models = []
    missing = [spec for spec in specs if isinstance(spec, ModelSpec) and not zoo.has(spec)]
    if train_missing and missing:
        if distributed():  # train every missing model at once, in parallel on the cluster
            train_parallel(args, missing)
        else:
            train_with_bar(args, missing)
    for spec in specs:
        models.append(zoo.load(spec))
    return models


def _set_threads(specs: list[ModelSpec | UserModelName], args: argparse.Namespace) -> None:
    """One CPU thread for this process when every model works on small images (digits) on the CPU: their ops
    are too small to share between threads (``trend_core.training.threads.training_threads``)."""
    # local: loads torch only when needed (keeps start-up fast)
    import torch

    from trend_core.config.datasets import get_info
    from trend_core.runtime.devices import resolve_device
    from trend_core.training.threads import training_threads

    device = resolve_device(getattr(args, "device", "auto"))
    counts = {training_threads(get_info(spec.dataset), device) for spec in specs}
    if specs and counts == {1} and torch.get_num_threads() != 1:
        _THREADS_BEFORE.setdefault("threads", torch.get_num_threads())
        torch.set_num_threads(1)


def restore_threads() -> None:
    """Undo ``_set_threads`` (the CLI's main calls this after each command, for callers that stay in-process)."""
    before = _THREADS_BEFORE.pop("threads", None)
    if before is not None:
        # local: loads torch only when needed (keeps start-up fast)
        import torch

        torch.set_num_threads(before)


def distributed() -> bool:
    """Whether the chosen executor (--executor, TREND_EXECUTOR) runs work off this process."""
    return get_executor().distributed


def train_parallel(args: argparse.Namespace, specs: list[ModelSpec]) -> None:
    """Train ``specs`` as parallel units on the chosen executor, one line on stderr per finished model."""
    # local: loads torch only when needed (keeps start-up fast)
    from trend_core.models.zoo_training import train_specs

    if not specs:
        return
    print(f"training {len(specs)} models on the {executor_label()} ...", file=sys.stderr)

    def report(step) -> None:
        acc = "" if step.test_acc is None else f": test accuracy {step.test_acc:.4f}"
        print(f"[{step.done}/{step.total}] {step.name}{acc}", file=sys.stderr)

    train_specs(zoo_from(args), specs, device=args.device, progress=report)


def executor_label() -> str:
    status = get_executor().status()
    if status["executor"] != "ray":
        return "local executor"
    return f"Ray cluster ({status['nodes']} nodes, {status['cpus']} CPUs, {status['gpus']} GPUs)"


def train_with_bar(args: argparse.Namespace, specs: list[ModelSpec], retrain: bool = False) -> None:
    """Train ``specs`` into the zoo under one bar over all their epochs (elapsed time, time left), with a line
    per finished model; small-image models on the CPU train side by side (``Zoo.train_many``)."""
    # local: keeps this torch-free module's start-up light
    from tqdm import tqdm

    if not specs:
        return
    zoo = zoo_from(args)
    print(f"training {len(specs)} model{'s' if len(specs) > 1 else ''} ...", file=sys.stderr)
    bar = tqdm(total=sum(spec.epochs or 1 for spec in specs), desc="training", unit="epoch", file=sys.stderr)

    def progress(step) -> None:
        if step.result is not None:
            bar.write(
                f"{step.spec.name}: test accuracy {step.result.test_acc:.4f} ({step.result.train_seconds:.1f} s)",
                file=sys.stderr,
            )
        else:  # an epoch (or, on a cluster, a whole model) done
            bar.update(step.epochs_done - bar.n)
            bar.set_postfix_str(step.message, refresh=False)

    try:
        zoo.train_many(specs, device=args.device, progress=progress, retrain=retrain)
    finally:
        bar.close()


@contextlib.contextmanager
def work_bar(desc: str) -> Iterator[Callable[[float | None, str | None], None]]:
    """A tqdm bar over the fraction of the work done, with elapsed time and the time left; yields the
    ``report(fraction, message)`` callback that ``trend_core.runtime.progress.WorkMeter`` drives (as a job's bar).

    The bar appears once the first piece of work is done, so an error in the input (found as the work starts)
    stays the one line on stderr."""
    # local: keeps this torch-free module's start-up light
    from tqdm import tqdm

    bars: list = []
    started = time.time()  # tqdm's clock

    def report(fraction: float | None, message: str | None = None) -> None:
        if not bars:
            if not fraction:
                return
            bars.append(
                tqdm(
                    total=1.0,
                    desc=desc,
                    file=sys.stderr,
                    leave=False,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}",
                )
            )
            bars[0].start_t = started  # elapsed time counts from the start of the work, not the first report
        bar = bars[0]
        if fraction is not None and fraction > bar.n:
            bar.update(min(1.0, fraction) - bar.n)
        if message is not None:
            bar.set_postfix_str(message)

    try:
        yield report
    finally:
        if bars:
            bars[0].close()


def emit_table(frame: pd.DataFrame, as_json: bool, csv_path: str | None = None, float_format: str = "{:.3f}") -> None:
    """Print a DataFrame as text or JSON records, or write it as CSV (atomically)."""
    # local: keeps this torch-free module's start-up light
    import pandas as pd

    if csv_path:
        # local: loads torch only when needed (keeps start-up fast)
        from trend_core.models.checkpoints import atomic_write_bytes

        try:
            atomic_write_bytes(Path(csv_path), frame.to_csv(index=True).encode())
        except OSError as exc:  # checked writable before the work; a full disk shows only now
            raise TrendError(
                f"{csv_path} could not be written ({exc.strerror}); free space or name another file."
            ) from None
        print(f"wrote {csv_path}", file=sys.stderr)
        return
    if as_json:
        print(frame.reset_index().to_json(orient="records", indent=2))
        return
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_rows", 500):
        print(frame.to_string(float_format=lambda v: float_format.format(v)))


def emit_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))
