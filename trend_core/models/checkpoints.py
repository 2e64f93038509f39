"""The zoo's checkpoint format and its files: atomic writes, reading a user's state_dict without unpickling
code, loading weights into a model with one-sentence explanations of a mismatch, the checks imported weights
pass, and how the files of the models folder are named, hashed and told apart from a user's own files.

Checkpoints are read with safetensors (no pickle); a user's ``.pt`` state_dict is read with
``torch.load(weights_only=True)``, which refuses arbitrary objects, so a hostile file is never executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from trend_core.config.datasets import get_info
from trend_core.config.specs import ModelSpec
from trend_core.data.datasets import load_dataset
from trend_core.errors import TrendError
from trend_core.nn.build import TrendModel


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path`` (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def library_versions() -> dict:
    import torchvision  # local: torchvision takes seconds to import; here only for its version

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version()}


IMPORTED = "imported"  # metadata "origin" of weights a user brought (not trained by this zoo from the spec)


def is_imported(meta: dict) -> bool:
    """Whether a zoo model's metadata says its weights were imported (kept out of training families and seed
    statistics unless the user asks): its "origin", or for imports older than that field, its "source"."""
    return meta.get("origin") == IMPORTED or str(meta.get("source") or "").startswith("imported")


def read_state_dict(path: str | os.PathLike, display_name: str | None = None) -> dict[str, torch.Tensor]:
    """Read tensors from a .safetensors file or a weights-only torch file; anything else is refused.

    Errors name the file as ``display_name`` (default: its file name) and say in one sentence what is wrong.
    """
    path = Path(path)
    shown = display_name or path.name
    if not path.is_file():
        raise TrendError(f"No weights file at {path}.")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            raise TrendError(
                f"{shown} is not a valid safetensors file (it is damaged or in another format); "
                "save the weights with safetensors.torch.save_file(model.state_dict(), path)."
            ) from None
    try:
        with warnings.catch_warnings():  # torch's note on a file's pickle protocol is noise next to our verdict
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # UnpicklingError for hostile pickles, RuntimeError/EOFError for damaged files
        raise TrendError(
            f"{shown} is not a PyTorch state_dict this app can read: it is damaged, not a PyTorch file, or holds "
            "objects other than tensors (a whole pickled model, which is refused because unpickling can run code); "
            "save it with torch.save(model.state_dict(), path)."
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TrendError(
            f"{shown} does not hold a state_dict (a mapping of layer names to tensors); save it with "
            "torch.save(model.state_dict(), path)."
        )
    if not obj:
        raise TrendError(f"{shown} holds an empty state_dict: no tensors to load.")
    return obj


def load_state(model: TrendModel, state: dict[str, torch.Tensor], name: str, file: str = "These weights") -> None:
    """Load into ``model``; accepts keys of the whole model or of the bare network; explains a mismatch in one
    sentence: another architecture (no tensor name in common), or which tensor has which wrong shape."""
    if state and not any(k.startswith("net.") for k in state):
        state = {f"net.{k.removeprefix('module.')}": v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if len(missing) == len(expected):
        raise TrendError(
            f"{file} holds weights of another architecture than {name}: none of its {len(state)} "
            f"tensors has a name {name} uses (it has {next(iter(state)).removeprefix('net.')}, "
            f"{name} starts with {next(iter(expected)).removeprefix('net.')})."
        )
    if wrong:
        key, got, want = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise TrendError(
            f"{file} has the layers of {name} but other shapes: {key.removeprefix('net.')} is "
            f"{_shape(got)} in the file and {_shape(want)} in the spec{more}; check the spec's width "
            "and the dataset's number of classes."
        )
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors of {name} are missing (first: {missing[0].removeprefix('net.')})")
        if unexpected:
            parts.append(f"{len(unexpected)} tensors are not in {name} (first: {unexpected[0].removeprefix('net.')})")
        raise TrendError(
            f"{file} does not match {name}: " + " and ".join(parts) + "; check the spec's "
            "architecture and its weight and activation quantization."
        )
    model.load_state_dict(state)


def _shape(shape: tuple) -> str:
    return "x".join(str(d) for d in shape) if shape else "a scalar"


def check_values(model: TrendModel, state: dict[str, torch.Tensor], name: str, filename: str) -> None:
    """Refuse weights whose dtype kind differs from the model's (int8 for float) or that are not finite."""
    if state and not any(k.startswith("net.") for k in state):
        state = {f"net.{k.removeprefix('module.')}": v for k, v in state.items()}
    for key, expected in model.state_dict().items():
        given = state.get(key)
        if given is None:
            continue
        if given.dtype.is_floating_point != expected.dtype.is_floating_point or given.dtype == torch.bool:
            raise TrendError(
                f"{filename} holds {key} as {str(given.dtype).removeprefix('torch.')}, but {name} "
                f"needs {str(expected.dtype).removeprefix('torch.')}; export the weights unconverted."
            )
        if given.dtype.is_floating_point and not bool(torch.isfinite(given).all()):
            raise TrendError(
                f"{filename} holds non-finite values (NaN or infinity) in {key}; these weights are not a trained model."
            )


def check_outputs(model: TrendModel, spec: ModelSpec, filename: str) -> None:
    """Refuse weights whose outputs are not finite on a probe batch (finite weights can still give NaN: a negative
    BatchNorm running variance, or weights so large that the activations overflow float32)."""
    try:
        x = load_dataset(spec.dataset).tensors("test", limit=32)[0]
    except TrendError:  # the dataset is not on this machine: a seeded random batch of its image shape
        x = torch.rand((32, *get_info(spec.dataset).input_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outputs = model.eval()(x)
    if not bool(torch.isfinite(outputs).all()):
        raise TrendError(
            f"{filename} gives non-finite outputs (NaN or infinity) on {spec.dataset} images although its values "
            "are finite (a negative BatchNorm running variance, or weights too large for float32); these "
            "weights are not a trained model."
        )


def pending_path(path: Path) -> Path:
    """Where a save writes ``path`` before swapping it in."""
    return path.with_name(path.name + ".new")


_DIGESTS: dict[tuple, str] = {}  # sha256 of weights files by (path, inode, size, mtime, ctime): hashed once


def sha256_of(path: Path) -> str | None:
    """The file's sha256 (None when unreadable); remembered while the file stays unchanged, so listing a zoo
    often (each dashboard rerun) hashes each checkpoint once per process."""
    try:
        st = path.stat()
        signature = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        known = _DIGESTS.get(signature)
        if known is None:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
            known = digest.hexdigest()
            if len(_DIGESTS) > 4096:
                _DIGESTS.clear()
            _DIGESTS[signature] = known
        return known
    except OSError:
        return None


def size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


# The files a save writes in the models folder: <key>.json and <key>.safetensors, their pending .new versions,
# and atomic_write_bytes' temporary files (.<key>.<suffix>.new.<random>.tmp); a key is 16 hex digits.
_ENTRY_FILE = re.compile(r"(?P<key>[0-9a-f]{16})\.(?:json|safetensors)(?:\.new)?")
_TEMP_FILE = re.compile(r"\.(?P<key>[0-9a-f]{16})\.(?:json|safetensors)\.new\.[A-Za-z0-9_]+\.tmp")


def entry_files(models_dir: Path) -> dict[str, list[Path]]:
    """The files of the models folder named as a save names them, by key (anything else is not the zoo's)."""
    files: dict[str, list[Path]] = {}
    for path in models_dir.iterdir():
        match = _ENTRY_FILE.fullmatch(path.name) or _TEMP_FILE.fullmatch(path.name)
        if match and not path.is_dir():
            files.setdefault(match["key"], []).append(path)
    return files


def is_leftover(path: Path) -> bool:
    """A pending half of a save (``.new``) or a save's temporary file."""
    return path.name.endswith(".new") or path.name.endswith(".tmp")


def is_our_metadata(meta: object) -> bool:
    """Whether JSON content is metadata this project wrote: a dict with a model spec and its name or key."""
    return isinstance(meta, dict) and isinstance(meta.get("spec"), dict) and ("key" in meta or "name" in meta)


def is_ours(path: Path, entry: list[Path]) -> bool:
    """Whether ``path`` (one of an ``entry``'s files) was written by this project, by its content as well as its
    name: metadata that reads as ours or not as JSON at all; weights beside our metadata or in the
    safetensors format; leftovers of a save. A user's JSON that happens to carry a key's name is not ours."""
    if is_leftover(path):
        return True
    if path.suffix == ".json":
        try:
            return is_our_metadata(json.loads(path.read_text()))
        except (OSError, ValueError):
            return True  # unreadable: a metadata file cut short or damaged (a user's file would be JSON)
    meta = path.with_suffix(".json")
    return (meta in entry and is_ours(meta, entry)) or _looks_like_safetensors(path)


def _looks_like_safetensors(path: Path) -> bool:
    """Whether the file starts as safetensors files do: an 8-byte header length, then a JSON header."""
    try:
        with path.open("rb") as handle:
            head = handle.read(9)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size


def complete_meta(meta_path: Path, weights_path: Path) -> dict | None:
    """The metadata when it is readable and its weights file exists with the recorded size, else None."""
    try:
        meta = json.loads(meta_path.read_text())
        size = weights_path.stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
        return None
    recorded = meta.get("weights_bytes")
    return meta if recorded is None or recorded == size else None
