"""Checks on the folders a user names (the store folder, output files) before any work is done, and the
store folders the dashboard may offer.

A path is usable when it is, or can be created as, a directory (or file) that this process may write: the
nearest part of it that exists must be a directory we can write into. Checking this first turns a failure
after minutes of training into one sentence at once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from trend_core.errors import TrendError


def default_home() -> Path:
    """The store root: $TREND_HOME, else the user's cache directory."""
    env = os.environ.get("TREND_HOME")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trend"


HOMES_ENV = "TREND_HOMES"  # extra store folders the dashboard offers, separated by os.pathsep
ROOT_ENV = "TREND_HOME_ROOT"  # an operator's root: dashboard users may pick or name folders inside it


def home_origin() -> str | None:
    """Where the default store folder comes from, for messages: '$TREND_HOME' when that names it, else None."""
    return "$TREND_HOME" if os.environ.get("TREND_HOME") else None


# The parts of a store folder and what each must be: the zoo's (models/, its lock files) and the results
# store's (cache/ with its SQLite database, the compute locks). Each is checked where it exists.
MODEL_PARTS = (("models", "folder"), ("models/.locks", "folder"))
CACHE_PARTS = (("cache", "folder"), ("cache/cache.db", "file"), ("locks", "folder"))
STORE_PARTS = MODEL_PARTS + CACHE_PARTS


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def _why_not(path: Path, kind: str, write: bool, label: str | None = None) -> str | None:
    """Why the existing ``path`` (called ``label`` in the reason, default its path) cannot serve as a ``kind``
    ('folder' or 'file') to read, and to write when ``write``; None when it can."""
    name = label or str(path)
    if not os.path.exists(path):  # (it lexists: a symbolic link whose target is missing or that loops)
        return f"{name} is a symbolic link that leads nowhere (a loop or a missing target)"
    if kind == "folder" and not path.is_dir():
        return f"{name} is a file, not a folder"
    if kind == "file" and path.is_dir():
        return f"{name} is a folder, not a file"
    if not os.access(path, os.R_OK | os.X_OK if kind == "folder" else os.R_OK):
        return f"this process may not read {name}"
    if write and not os.access(path, os.W_OK | os.X_OK if kind == "folder" else os.W_OK):
        return f"this process may not write {'in ' if kind == 'folder' else ''}{name}"
    return None


def _why_unwritable(path: Path, kind: str) -> str | None:
    """Why ``path`` cannot be written (created) as a ``kind`` ('folder' or 'file'); None when it can."""
    if "\x00" in str(path):
        return "its name holds a NUL character"
    if os.path.lexists(path):
        if kind == "folder" and not path.is_dir():
            return "it exists and is not a folder"
        if kind == "file" and path.is_dir():
            return "it is a folder"
        target = path if kind == "folder" else path.parent
        return None if os.access(target, os.W_OK | os.X_OK) else "this process may not write there"
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"this process may not create folders in {existing}"
    return None


def why_unusable(home: Path, write: bool, parts: tuple[tuple[str, str], ...]) -> str | None:
    """Why ``home`` cannot serve as a store folder: the folder itself, then each of its ``parts`` that exists."""
    if "\x00" in str(home):
        return "its name holds a NUL character"
    if not os.path.lexists(home):
        if write:
            return _why_unwritable(home, "folder")
        existing = _nearest_existing(home.parent)  # (read only: a folder that does not exist yet is an empty zoo)
        return None if existing.is_dir() else f"{existing} is a file, not a folder"
    why = _why_not(home, "folder", write, label="it")
    if why:
        return why
    for part, kind in parts:
        path = home / part
        if os.path.lexists(path):
            why = _why_not(path, kind, write)
            if why:
                return why
    return None


def check_home(
    path: str | os.PathLike,
    write: bool = True,
    parts: tuple[tuple[str, str], ...] = STORE_PARTS,
    origin: str | None = None,
) -> Path:
    """``path`` (user-expanded) when it can serve as a store folder, else a TrendError saying why and what to do.

    The folder must be one (or be creatable, when ``write``), readable, and writable when ``write``; so must
    each of its ``parts`` that exists (a file where ``models/`` belongs fails here, not after training).
    ``origin`` ('--home', '$TREND_HOME', 'cache=') names where the path came from in the message."""
    text = os.fspath(path)
    where = f" ({origin})" if origin else ""
    if not text.strip():
        raise TrendError(f"The store folder{where} is empty; name a folder (e.g. ~/.cache/trend).")
    home = Path(text.strip()).expanduser()
    why = why_unusable(home, write, parts)
    if why:
        raise TrendError(
            f"The store folder {home}{where} cannot be used: {why}; fix that or choose another store folder."
        )
    return home


def check_output_file(flag: str, path: str | os.PathLike) -> Path:
    """``path`` when a file can be written there (its folder may be created), else a TrendError naming ``flag``."""
    target = Path(os.fspath(path)).expanduser()
    why = _why_unwritable(target, "file")
    if why:
        raise TrendError(f"{flag} {target} cannot be written: {why}.")
    return target


def known_homes() -> list[Path]:
    """The store folders the dashboard offers: $TREND_HOME (else the user's default), those in $TREND_HOMES,
    and the folders directly inside the operator's root $TREND_HOME_ROOT; no duplicates, in that order."""

    homes = [default_home()]
    homes += [Path(p).expanduser() for p in os.environ.get(HOMES_ENV, "").split(os.pathsep) if p.strip()]
    root = operator_root()
    if root is not None and root.is_dir():
        homes += sorted(p for p in root.iterdir() if not p.name.startswith(".") and _inside(p, root) and p.is_dir())
    unique: dict[str, Path] = {}
    for home in homes:
        unique.setdefault(str(home.resolve()), home)
    return list(unique.values())


def operator_root() -> Path | None:
    """The folder $TREND_HOME_ROOT names, inside which dashboard users may create store folders, or None."""
    text = os.environ.get(ROOT_ENV, "").strip()
    return Path(text).expanduser().resolve() if text else None


def home_in_root(name: str) -> Path:
    """The store folder ``name`` inside the operator's root: one plain folder name, no path; a TrendError
    when there is no root, the name leaves it, or the folder cannot be created."""
    root = operator_root()
    if root is None:
        raise TrendError(f"New store folders are disabled; the operator can allow them by setting {ROOT_ENV}.")
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}", name):
        raise TrendError(
            f"A new store folder is one plain name inside {root} (letters, digits, - and _), got {name!r}."
        )
    if os.path.lexists(root / name) and not _inside(root / name, root):
        raise TrendError(
            f"{root / name} is a symbolic link that leads out of {root}; the store folders offered here are "
            "the folders inside it, so pick or name another."
        )
    return check_home(root / name)


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, its symbolic links followed, is ``root`` or inside it (``root`` already resolved)."""
    try:
        return path.resolve(strict=True).is_relative_to(root)
    except (OSError, RuntimeError):  # a link that leads nowhere or loops
        return False
