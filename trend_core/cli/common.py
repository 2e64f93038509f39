"""Helpers shared by the CLI command modules: device and store options, model resolution, output."""
from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from ..devices import DEVICE_CHOICES
from ..specs import ModelSpec
from ..zoo import Zoo


def version() -> str:
    from .. import __version__

    return __version__


def add_common(parser: argparse.ArgumentParser) -> None:
    """--device, --home and --executor, accepted by every command."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="where to compute (default auto)")
    parser.add_argument("--home", default=None, help="store folder (default $TREND_HOME or ~/.cache/trend)")
    parser.add_argument("--executor", choices=("local", "ray"), default=None,
                        help="where heavy work runs: local threads or Ray tasks (default $TREND_EXECUTOR, else local)")


def zoo_from(args: argparse.Namespace) -> Zoo:
    return Zoo(getattr(args, "home", None))


def parse_names(names: list[str]) -> list[ModelSpec]:
    """Model names (or preset short-hands like 'preset:digits') to specs; bad names raise TrendError."""
    from ..zoo import preset_specs

    specs: list[ModelSpec] = []
    for name in names:
        if name.startswith("preset:"):
            specs.extend(preset_specs(name.split(":", 1)[1]))
        else:
            specs.append(ModelSpec.parse(name))
    return specs


def load_models(args: argparse.Namespace, names: list[str], train_missing: bool = True) -> list:
    """Load (training any missing, with a progress bar) the models named on the command line."""
    zoo = zoo_from(args)
    models = []
    specs = parse_names(names)
    if train_missing and distributed():  # train every missing model at once, in parallel on the cluster
        train_parallel(args, [spec for spec in specs if not zoo.has(spec)])
    for spec in specs:
        if not zoo.has(spec) and train_missing:
            print(f"training {spec.name} ...", file=sys.stderr)
            zoo.get_or_train(spec, device=args.device, progress=epoch_bar(spec))
        models.append(zoo.load(spec))
    return models


def distributed() -> bool:
    """Whether the chosen executor (--executor, TREND_EXECUTOR) runs work off this process."""
    from ..executors import get_executor

    return get_executor().distributed


def train_parallel(args: argparse.Namespace, specs: list[ModelSpec]) -> None:
    """Train ``specs`` as parallel units on the chosen executor, one line on stderr per finished model."""
    from ..scale import train_specs

    if not specs:
        return
    print(f"training {len(specs)} models on the {executor_label()} ...", file=sys.stderr)

    def report(step) -> None:
        acc = "" if step.test_acc is None else f": test accuracy {step.test_acc:.4f}"
        print(f"[{step.done}/{step.total}] {step.name}{acc}", file=sys.stderr)

    train_specs(zoo_from(args), specs, device=args.device, progress=report)


def executor_label() -> str:
    from ..executors import get_executor

    status = get_executor().status()
    if status["executor"] != "ray":
        return "local executor"
    return f"Ray cluster ({status['nodes']} nodes, {status['cpus']} CPUs, {status['gpus']} GPUs)"


def epoch_bar(spec: ModelSpec):
    """A tqdm progress callback for train_model."""
    from tqdm import tqdm

    bar = tqdm(total=spec.epochs, desc=spec.name, unit="epoch", leave=False, file=sys.stderr)

    def update(report) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{report.loss:.3f}", val=f"{report.val_acc:.3f}")
        if report.epoch >= report.epochs:
            bar.close()

    return update


def emit_table(frame: pd.DataFrame, as_json: bool, csv_path: str | None = None, float_format: str = "{:.3f}") -> None:
    """Print a DataFrame as text or JSON records, or write it as CSV (atomically)."""
    if csv_path:
        from pathlib import Path

        from ..zoo import atomic_write_bytes

        atomic_write_bytes(Path(csv_path), frame.to_csv(index=True).encode())
        print(f"wrote {csv_path}", file=sys.stderr)
        return
    if as_json:
        print(frame.reset_index().to_json(orient="records", indent=2))
        return
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_rows", 500):
        print(frame.to_string(float_format=lambda v: float_format.format(v)))


def emit_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))
