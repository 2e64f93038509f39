"""The results store: computed results (tensors, dicts, DataFrames) cached on disk, keyed by their content.

Keys come from ``content_key(...)`` over everything that determines a result (model weights via
``model_fingerprint``, attack parameters, the data subset), so a rerun with the same inputs is a lookup and
an interrupted sweep resumes where it stopped. Backed by diskcache (SQLite + files: transactional and safe
to share between threads and processes) under ``$TREND_HOME/cache``. Values are serialized without pickle:
tensors and containers of them with ``torch.save`` (read back with ``weights_only=True``), DataFrames as
Parquet, so opening a cache never runs code.

Damage is detected, not trusted: every value carries the sha256 of its bytes (a mismatch is a miss, with a
warning, and the value is recomputed), and a cache database SQLite cannot read is moved aside
(``cache.damaged-<time>``) and replaced by an empty one, with a warning; checkpoints live elsewhere
(``models/``) and are never touched. ``Store.lock(key)`` lets processes that would compute the same value
wait for the first one instead of repeating its work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import diskcache
import pandas as pd
import torch

from trend_core.errors import TrendError
from trend_core.storage.homes import CACHE_PARTS, check_home, default_home, home_origin, why_unusable
from trend_core.storage.locks import file_lock

log = logging.getLogger(__name__)

MISSING = object()
_CHECKED = b"TRENDv1\n"  # framing of stored values: this tag, the payload's sha256 (32 bytes), the payload
_FINGERPRINT_ATTR = "_trend_fingerprint"
_FRAME_TAG = "__dataframe_parquet__"
_SCALARS = (str, int, float, bool, type(None))
_STREAM_BYTES = 1 << 20


# ----------------------------------------------------------------------------- content keys
def tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (device independent)."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    digest = hashlib.sha256(f"{flat.dtype}|{tuple(tensor.shape)}|".encode())
    if flat.numel():
        digest.update(flat.view(torch.uint8).numpy())  # type: ignore[arg-type]  # (an ndarray is a buffer)
    return digest.hexdigest()


def _canonical(obj: Any) -> Any:
    """A JSON-able stand-in for ``obj`` that changes whenever its content does."""
    if isinstance(obj, torch.Tensor):
        return {"__tensor__": tensor_digest(obj)}
    if isinstance(obj, float):
        return {"__float__": repr(float(obj))}  # NaN / inf stay distinct and JSON stays standard
    if isinstance(obj, _SCALARS):
        return obj
    if isinstance(obj, dict):
        return {"__dict__": sorted((json.dumps(_canonical(k), sort_keys=True), _canonical(v)) for k, v in obj.items())}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return {"__set__": sorted(json.dumps(_canonical(v), sort_keys=True) for v in obj)}
    if isinstance(obj, os.PathLike):
        return {"__path__": os.fspath(obj)}
    if isinstance(obj, torch.dtype | torch.device):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            "__dataclass__": type(obj).__qualname__,
            "fields": {f.name: _canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)},
        }
    if hasattr(obj, "__array__"):
        return {"__tensor__": tensor_digest(torch.as_tensor(obj))}
    raise TypeError(f"content_key cannot hash a {type(obj).__name__}; pass JSON-able values or tensors.")


def content_key(*parts: Any) -> str:
    """A stable sha256 hex key over JSON-able parts and tensors (same content, same key, in any process)."""
    payload = json.dumps([_canonical(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _weights_signature(model: torch.nn.Module) -> tuple | None:
    """A cheap token that changes when any parameter or buffer is replaced or modified in place."""
    try:
        return tuple((name, t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for name, t in _tensors(model))
    except RuntimeError:  # inference tensors have no version counter: do not cache
        return None


def _tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The state_dict plus non-persistent buffers (normalization constants), by name."""
    tensors = {k: v for k, v in model.state_dict(keep_vars=True).items() if isinstance(v, torch.Tensor)}
    tensors.update({k: v for k, v in model.named_buffers() if k not in tensors})
    return sorted(tensors.items())


def model_fingerprint(model: torch.nn.Module) -> str:
    """Content key of a model: its class, structure (repr), spec name if any, and every weight tensor.

    Cached on the module and recomputed only when a tensor is replaced or changed in place (training,
    load_state_dict), so calling it often is cheap.
    """
    signature = _weights_signature(model)
    cached = getattr(model, _FINGERPRINT_ATTR, None)
    if signature is not None and cached is not None and cached[0] == signature:
        return cached[1]
    spec = getattr(model, "spec", None)
    fingerprint = content_key(
        "model",
        f"{type(model).__module__}.{type(model).__qualname__}",
        repr(model),
        getattr(spec, "name", None),
        [(name, tensor_digest(t)) for name, t in _tensors(model)],
    )
    if signature is not None:
        object.__setattr__(model, _FINGERPRINT_ATTR, (signature, fingerprint))
    return fingerprint


# ----------------------------------------------------------------------------- serialization
def _encode(value: Any) -> Any:
    """Replace DataFrames by Parquet bytes (as uint8 tensors) and check every leaf is safe to torch.save."""
    if isinstance(value, pd.DataFrame | pd.Series):
        frame = value.to_frame() if isinstance(value, pd.Series) else value
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        return {_FRAME_TAG: torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)}
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu")
        if not tensor.is_contiguous() or tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size():
            tensor = tensor.clone(memory_format=torch.contiguous_format)  # a view would save its whole base
        return tensor
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_encode(v) for v in value)
    raise TypeError(
        f"The store keeps tensors, DataFrames, numbers, strings and dicts/lists of them, not {type(value).__name__}."
    )


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_FRAME_TAG}:
            return pd.read_parquet(io.BytesIO(value[_FRAME_TAG].numpy().tobytes()))
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_decode(v) for v in value)
    return value


def dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(_encode(value), buffer)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    return _decode(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


class StoreWarning(UserWarning):
    """The store found damage and recovered from it (one sentence for the user)."""


def _seal(data: bytes) -> bytes:
    return _CHECKED + hashlib.sha256(data).digest() + data


def _unseal(blob: bytes) -> bytes | None:
    """The payload of a sealed value, or None when the tag or the checksum does not match."""
    head = len(_CHECKED)
    if not blob.startswith(_CHECKED) or len(blob) < head + 32:
        return None
    payload = blob[head + 32 :]
    return payload if hashlib.sha256(payload).digest() == blob[head : head + 32] else None


def store_root(root: str | os.PathLike | None = None) -> Path:
    """The home folder a store lives under: ``root``, else $TREND_HOME or the default (the zoo's own root)."""
    return Path(root).expanduser() if root else default_home()


# ----------------------------------------------------------------------------- stores
class Store:
    """Results on disk under ``<root>/cache`` (root: $TREND_HOME by default), keyed by content keys.

    ``set`` is atomic (a killed writer leaves the old value or none, never a torn one); least recently
    stored entries are evicted beyond ``size_limit_gb``.
    """

    def __init__(self, root: str | os.PathLike | None = None, size_limit_gb: float = 8.0, origin: str | None = None):
        """The store under ``root`` (default $TREND_HOME), checked first: a TrendError naming the folder (and
        ``origin``, the argument it came from) when its cache cannot be opened and written."""
        home = check_home(store_root(root), parts=CACHE_PARTS, origin=origin if root else home_origin())
        self.directory = home / "cache"
        self._locks = home / "locks"
        self._size_limit = int(size_limit_gb * 2**30)
        self._guard = threading.RLock()
        self._cache = None
        self._failed: str | None = None  # why writes stopped working mid-run (then the run goes on without them)
        try:
            self._call(lambda cache: len(cache))  # opens it, moving a database SQLite cannot read aside
        except (OSError, sqlite3.OperationalError) as exc:
            raise TrendError(
                f"The results cache {self.directory} cannot be opened ({exc}); make it writable, delete it (only "
                "cached results are lost) or choose another store folder."
            ) from None

    def _open(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        return diskcache.Cache(str(self.directory), size_limit=self._size_limit)

    def _call(self, operation: Callable[[Any], Any]) -> Any:
        """``operation(cache)``; when SQLite reports damage, move the cache aside, open a fresh one, retry once."""
        try:
            with self._guard:
                if self._cache is None:
                    self._cache = self._open()
                cache = self._cache
            return operation(cache)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "no such table" not in str(exc):
                raise  # locked, disk full, no permission: the database itself is not damaged
            self._quarantine(exc)
            return operation(self._cache)

    def _quarantine(self, exc: Exception) -> None:
        with self._guard:
            if self._cache is not None:
                with contextlib.suppress(Exception):
                    self._cache.close()
            aside = self.directory.with_name(f"cache.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            with contextlib.suppress(OSError):
                os.replace(self.directory, aside)
            warnings.warn(
                StoreWarning(
                    f"The results cache {self.directory} was damaged ({exc}); moved it to {aside.name} and started "
                    "an empty one, so results will be recomputed (models are not affected)."
                ),
                stacklevel=3,
            )
            self._cache = self._open()

    def _lost(self, exc: Exception, what: str) -> None:
        """The cache failed mid-run (made read-only, disk full, files removed): warn once and go on without it,
        so the run still finishes and returns its results (they are only not kept)."""
        if self._failed is None:
            self._failed = why_unusable(self.directory.parent, True, CACHE_PARTS) or str(exc)
            warnings.warn(
                StoreWarning(
                    f"The results cache {self.directory} could not be {what} ({self._failed}); this run goes on "
                    "without it and its results are not kept there: make the folder writable again or choose "
                    "another one."
                ),
                stacklevel=3,
            )

    def get(self, key: str, default: Any = None) -> Any:
        try:
            data = self._call(lambda cache: cache.get(key, default=MISSING, retry=True))
        except (OSError, sqlite3.OperationalError) as exc:
            self._lost(exc, "read")
            return default
        if data is MISSING:
            return default
        payload = _unseal(bytes(data))
        if payload is None:
            damaged = bytes(data[: len(_CHECKED)]) == _CHECKED
            if damaged:  # the user hears of damage; an entry of an older format is only logged
                warnings.warn(
                    StoreWarning(
                        f"A cached result ({key[:12]}) failed its checksum (damaged on disk); it is recomputed."
                    ),
                    stacklevel=2,
                )
            log.warning(
                "results store %s: entry %s is unreadable (%s); it is dropped and will be computed again",
                self.directory,
                key,
                "checksum mismatch" if damaged else "not in this version's format",
            )
            self.delete(key)
            return default
        try:
            return loads(payload)
        except Exception as exc:  # noqa: BLE001 - an unreadable entry (older format, damaged file) is a miss
            log.warning(
                "results store %s: entry %s is unreadable (%s: %s); it is dropped and will be computed again",
                self.directory,
                key,
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
            self.delete(key)
            return default

    def set(self, key: str, value: Any) -> None:
        data = _seal(dumps(value))
        if self._failed is not None:
            return
        try:
            if len(data) > _STREAM_BYTES:  # large values go to a file in 4 MiB chunks (bytes would split at newlines)
                self._call(lambda cache: cache.set(key, io.BytesIO(data), read=True, retry=True))
            else:
                self._call(lambda cache: cache.set(key, data, retry=True))
        except (OSError, sqlite3.OperationalError) as exc:
            self._lost(exc, "written")

    def has(self, key: str) -> bool:
        try:
            return self._call(lambda cache: key in cache)
        except (OSError, sqlite3.OperationalError) as exc:
            self._lost(exc, "read")
            return False

    def delete(self, key: str) -> bool:
        try:
            return bool(self._call(lambda cache: cache.delete(key, retry=True)))
        except (OSError, sqlite3.OperationalError) as exc:
            self._lost(exc, "written")
            return False

    def clear(self) -> int:
        return self._call(lambda cache: cache.clear(retry=True))

    def lock(self, key: str) -> contextlib.AbstractContextManager:
        """An inter-process lock for computing ``key``'s value once: hold it, look in the store, compute only
        if still missing. Keys share 4096 lock files, so an unrelated key can rarely wait too."""
        return file_lock(self._locks / f"{key[:3]}.lock")

    def __len__(self) -> int:
        return self._call(lambda cache: len(cache))

    def keys(self) -> list[str]:
        """Every key held now (for comparing two stores and for `trend cache` listings)."""
        return self._call(lambda cache: [str(k) for k in cache.iterkeys()])

    def close(self) -> None:
        with self._guard:
            if self._cache is not None:
                self._cache.close()


class MemoryStore:
    """The Store interface in memory, for callers that want no disk cache (tests, one-off runs).

    Values are checked and moved to the CPU as the disk store would, but tensors are kept by reference
    (not serialized): callers must not modify a tensor after storing it.
    """

    def __init__(self):
        self._data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return _decode(self._data[key]) if key in self._data else default

    def set(self, key: str, value: Any) -> None:
        self._data[key] = _encode(value)

    def has(self, key: str) -> bool:
        return key in self._data

    def delete(self, key: str) -> bool:
        return self._data.pop(key, None) is not None

    def clear(self) -> int:
        count = len(self._data)
        self._data.clear()
        return count

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> list[str]:
        """Every key held now."""
        return list(self._data)

    def close(self) -> None:
        pass


_DEFAULT_STORES: dict[tuple[str, int], Store] = {}
_LOCK = threading.Lock()


def get_store(root: str | os.PathLike | None = None, origin: str | None = None) -> Store:
    """The shared Store of ``root`` (default $TREND_HOME, read at each call), one per folder and process; the
    folder is checked first (``origin``: the argument that named it, for the message)."""
    home = check_home(store_root(root), parts=CACHE_PARTS, origin=origin if root else home_origin())
    key = (str(home.resolve()), os.getpid())  # a forked child opens its own SQLite connection
    with _LOCK:
        store = _DEFAULT_STORES.get(key)
        if store is None:
            store = _DEFAULT_STORES[key] = Store(home, origin=origin)
        return store


AnyStore = Store | MemoryStore
Cache = Store | MemoryStore | str | os.PathLike | bool | None


def resolve_cache(cache: Cache) -> Store | MemoryStore:
    """The store a run reads and writes, from a ``cache=`` argument; one meaning per value:

    ``None`` or ``False`` (the library's default): nothing is written anywhere (a fresh in-memory store for this
    call); ``True``: the shared store under $TREND_HOME; a folder (str or path): the shared store there; a
    Store or MemoryStore: that store.
    """
    if cache is None or cache is False:
        return MemoryStore()
    if cache is True:
        return get_store()
    if isinstance(cache, (Store, MemoryStore)):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return get_store(cache, origin="cache=")
    if all(callable(getattr(cache, name, None)) for name in ("get", "set", "has")):
        return cache  # another object with the store interface (e.g. a remote store)
    raise TrendError(f"cache must be None, True, a folder or a Store, got {type(cache).__name__}.")
