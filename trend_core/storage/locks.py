"""Inter-process locks on files, so two processes sharing one store never commit the same thing at once.

A lock is an exclusive ``flock`` on a small file; the kernel releases it when its holder exits, however it
exits (SIGKILL included), so a killed process never leaves a lock behind. Where ``fcntl`` does not exist
(Windows) the lock is a no-op and the store falls back to its atomic renames alone.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from trend_core.errors import TrendError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux / macOS
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block; waits while another holds it."""
    if fcntl is None:
        yield
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # the store folder changed under a running process (checked before any work)
        raise TrendError(
            f"The lock file {path} cannot be created ({exc.strerror}); make its folder writable or choose "
            "another store folder."
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
