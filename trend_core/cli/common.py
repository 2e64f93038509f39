"""Helpers shared by the CLI command modules: device and store options, model resolution, output."""
from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from ..devices import DEVICE_CHOICES
from ..profiles import DEFAULT_PROFILE, PROFILES
from ..specs import ModelSpec
from ..zoo import Zoo


def version() -> str:
    from .. import __version__

    return __version__


def add_common(parser: argparse.ArgumentParser) -> None:
    """--device and --home, accepted by every command."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="where to compute (default auto)")
    parser.add_argument("--home", default=None, help="store folder (default $TREND_HOME or ~/.cache/trend)")


def add_profile(parser: argparse.ArgumentParser) -> None:
    """--profile paper|authors, for the commands whose results depend on it."""
    parser.add_argument("--profile", choices=PROFILES, default=None,
                        help="method profile: paper (default; the project's documented choices) or authors (the TREND "
                             "authors' code: batch-range input quantization, their CIFAR std, batch 512, ...); "
                             "models named without a profile part get this one")


def profile_of(args: argparse.Namespace) -> str:
    """The profile a command runs under (the default when --profile is absent)."""
    return getattr(args, "profile", None) or DEFAULT_PROFILE


def zoo_from(args: argparse.Namespace) -> Zoo:
    return Zoo(getattr(args, "home", None))


def parse_names(names: list[str], profile: str | None = None) -> list[ModelSpec]:
    """Model names (or preset short-hands like 'preset:digits') to specs; bad names raise TrendError.

    With a ``profile`` other than the default, every spec at the default profile is given it (so
    ``--profile authors`` turns ``preset:digits`` into the authors' versions of the preset)."""
    from ..zoo import preset_specs

    specs: list[ModelSpec] = []
    for name in names:
        if name.startswith("preset:"):
            specs.extend(preset_specs(name.split(":", 1)[1]))
        else:
            specs.append(ModelSpec.parse(name))
    if profile and profile != DEFAULT_PROFILE:
        specs = [s.replace(profile=profile) if s.profile == DEFAULT_PROFILE else s for s in specs]
    return specs


def load_models(args: argparse.Namespace, names: list[str], train_missing: bool = True) -> list:
    """Load (training any missing, with a progress bar) the models named on the command line."""
    zoo = zoo_from(args)
    models = []
    for spec in parse_names(names):
        if not zoo.has(spec) and train_missing:
            print(f"training {spec.name} ...", file=sys.stderr)
            zoo.get_or_train(spec, device=args.device, progress=epoch_bar(spec))
        models.append(zoo.load(spec))
    return models


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
