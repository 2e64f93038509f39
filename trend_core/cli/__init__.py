"""The `trend` command: headless runs and batch sweeps over the same engine functions as the dashboard.

Each command group lives in its own module with a ``register(subparsers)`` function; ``main`` turns every
TrendError into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import TrendError
from ..executors import set_default
from . import common

COMMAND_MODULES = ("models", "transfer", "ensemble", "audit", "reproduce")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trend", description="TREND Lab: transferability and robust ensembles.")
    parser.add_argument("--version", action="version", version=f"trend {common.version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    common.show_warnings_as_lines()
    try:
        set_default(getattr(args, "executor", None))
        return int(args.func(args) or 0)
    except TrendError as exc:
        print(f"trend: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trend: interrupted; finished work is kept in the store.", file=sys.stderr)
        return 130
    finally:
        common.restore_threads()


if __name__ == "__main__":
    sys.exit(main())
