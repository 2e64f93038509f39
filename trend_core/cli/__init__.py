"""The `trend` command: headless runs and batch sweeps over the same engine functions as the dashboard.

Each command group lives in its own module with a ``register(subparsers)`` function; ``main`` turns every
TrendError into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from typing import NoReturn

from trend_core.cli import common
from trend_core.cli.leave import leave
from trend_core.errors import TrendError
from trend_core.runtime.executors import set_default

COMMAND_MODULES = ("models", "transfer", "ensemble", "export", "audit", "reproduce")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trend", description="TREND Lab: transferability and robust ensembles.")
    parser.add_argument("--version", action="version", version=f"trend {common.version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


class OutputError(TrendError):
    """Writing the command's output (stdout) failed: a full disk, a closed pipe."""

    def __init__(self, exc: OSError):
        super().__init__(
            f"Writing the output failed ({exc.strerror or exc}); free space or send the output somewhere else "
            "(results computed so far are kept in the store)."
        )
        self.errno = exc.errno


class _CheckedOutput:
    """sys.stdout while a command runs: a write or flush that fails raises OutputError (one line, exit 2)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise OutputError(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputError(exc) from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _drop_output(stream) -> None:
    """Point a failed stdout at /dev/null, so its unwritten buffer does not fail again when Python exits."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):  # (a stream without a file descriptor, as under pytest)
        pass


def run() -> NoReturn:
    """The `trend` command (console script and ``python -m trend_core``): ``main``'s exit status, leaving without
    the interpreter's slow teardown (``cli.leave``)."""
    leave(main())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    common.show_warnings_as_lines()
    stdout = sys.stdout
    sys.stdout = _CheckedOutput(stdout)  # type: ignore[assignment]
    try:
        set_default(getattr(args, "executor", None))
        status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except OutputError as exc:
        _drop_output(stdout)
        if exc.errno == errno.EPIPE:  # the reader stopped reading (`| head`): quiet, as a shell's SIGPIPE
            return 128 + 13
        print(f"trend: error: {exc}", file=sys.stderr)
        return 2
    except TrendError as exc:
        print(f"trend: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trend: interrupted; finished work is kept in the store.", file=sys.stderr)
        return 130
    finally:
        sys.stdout = stdout
        common.restore_threads()


if __name__ == "__main__":
    sys.exit(main())
