"""The model zoo: trained checkpoints (safetensors) with JSON metadata, addressed by spec key.

Layout under the store root (``$TREND_HOME``, default ``~/.cache/trend``)::

    models/<key>.safetensors   the state_dict, written to a temporary name and renamed (atomic)
    models/<key>.json          spec, name, accuracies, training time, library versions, the weights' sha256

A model exists only when both files are complete and agree (the metadata records the weights' size and
sha256). A save writes both under pending names first and then swaps them in under a per-model lock, so a
retrain or an import killed at any moment leaves the old model or the new one, never a mix or nothing;
a swap cut between its two renames is finished by the next reader. Leftovers and damaged entries are
reported by ``Zoo.problems()`` and removed by ``Zoo.clean()``.

Checkpoints are read with safetensors (no pickle); a user's ``.pt`` state_dict is read with
``torch.load(weights_only=True)``, which refuses arbitrary objects, so a hostile file is never executed.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import platform
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save

from trend_core.config.datasets import get_info
from trend_core.config.presets import PRESETS  # noqa: F401  (kept here for callers; torch-free so `trend --help` is fast)
from trend_core.config.specs import ModelSpec, parse_spec
from trend_core.data.datasets import load_dataset
from trend_core.errors import TrendError
from trend_core.experiments.units import TrainStep, train_specs
from trend_core.nn.build import TrendModel, build_model
from trend_core.runtime.executors import get_executor
from trend_core.storage.homes import (  # (default_home: also re-exported)
    MODEL_PARTS,
    check_home,
    default_home,
    home_origin,
)
from trend_core.storage.locks import file_lock
from trend_core.training.many import ManyProgress, train_models
from trend_core.training.train import accuracy, train_model, trained_metadata


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


def preset_specs(name: str = "digits") -> list[ModelSpec]:
    if name not in PRESETS:
        raise TrendError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return [ModelSpec.parse(n) for n in PRESETS[name]]


class Zoo:
    """Checkpoints and metadata under one root; safe to share between processes (atomic writes)."""

    def __init__(self, root: str | os.PathLike | None = None):
        """A zoo under ``root`` (default $TREND_HOME or ~/.cache/trend): a TrendError when that is a file, a broken
        link or unreadable (a folder that does not exist yet is an empty zoo); writes check it can be written."""
        self._origin = None if root else home_origin()
        self.root = check_home(root or default_home(), write=False, parts=MODEL_PARTS, origin=self._origin)
        self.models_dir = self.root / "models"

    def check_writable(self) -> None:
        """A TrendError, before any work, when models cannot be saved here (run before training or importing)."""
        check_home(self.root, write=True, parts=MODEL_PARTS, origin=self._origin)

    # -- paths ----------------------------------------------------------------------------------------------
    def _weights_path(self, spec: ModelSpec) -> Path:
        return self.models_dir / f"{spec.key}.safetensors"

    def _meta_path(self, spec: ModelSpec) -> Path:
        return self.models_dir / f"{spec.key}.json"

    def _lock_path(self, key: str) -> Path:
        return self.models_dir / ".locks" / f"{key}.lock"

    # -- queries ----------------------------------------------------------------------------------------------
    def has(self, spec: ModelSpec | str) -> bool:
        """Whether the zoo holds a complete entry for ``spec`` (weights and metadata, written and the size agreeing),
        so nothing trains over it; ``load`` checks it fully and ``problem`` says why it refuses one."""
        spec = parse_spec(spec)
        self._settle(spec.key)
        return _complete_meta(self._meta_path(spec), self._weights_path(spec)) is not None

    def metadata(self, spec: ModelSpec | str) -> dict:
        """The stored metadata of ``spec``, once the entry passes the checks ``load`` makes (else a TrendError)."""
        spec = parse_spec(spec)
        self._settle(spec.key)
        return self._checked(spec)

    def problem(self, spec: ModelSpec | str) -> str | None:
        """Why ``load`` refuses the zoo's entry for ``spec`` (one clause), or None when it loads or is absent."""
        spec = parse_spec(spec)
        self._settle(spec.key)
        return self._verify(spec.key)[1]

    def list(self, dataset: str | None = None) -> list[dict]:
        """Metadata of every model the zoo would load, sorted by name: each entry passes the checks ``load``
        makes (its metadata names its own key, its weights are the ones recorded); ``problems`` has the rest."""
        rows = []
        if self.models_dir.is_dir():
            for key in {p.name.split(".")[0] for p in self.models_dir.glob("*.json.new")}:
                self._settle(key)
            for key in sorted(_entry_files(self.models_dir)):
                meta, problem = self._verify(key)
                if meta is None or problem is not None:
                    continue
                if dataset is None or meta.get("spec", {}).get("dataset") == dataset:
                    rows.append(meta)
        return sorted(rows, key=lambda m: m.get("name", ""))

    def specs(self, dataset: str | None = None) -> builtins.list[ModelSpec]:  # (list: the method above)
        return [ModelSpec.from_dict(m["spec"]) for m in self.list(dataset)]

    def problems(self) -> builtins.list[dict]:
        """Entries of the models folder that ``load`` refuses, one dict per key with ``key``, ``name`` (when the
        metadata says it), ``problem`` (one clause) and ``files`` (what ``clean`` removes: only files this
        project wrote, found by their name and content; a user's file is never among them)."""
        if not self.models_dir.is_dir():
            return []
        found = []
        for key, paths in sorted(_entry_files(self.models_dir).items()):
            meta, problem = self._verify(key)
            leftovers = [p for p in paths if _is_leftover(p)]
            if problem is None:
                if not leftovers:
                    continue
                problem, files = "it has leftovers of an interrupted save", leftovers
            else:
                files = [p for p in paths if _is_ours(p, paths)]
            own = isinstance(meta, dict) and meta.get("key", key) == key  # (else the name is another model's)
            name = meta.get("name") if own and isinstance(meta, dict) else None
            found.append({"key": key, "name": name, "problem": problem, "files": sorted(map(str, files))})
        return found

    def clean(self) -> builtins.list[dict]:
        """Remove the files of every entry ``problems`` reports (each under its model's lock), so what is left
        is what ``load`` accepts, plus files this project did not write; returns what was removed."""
        removed = []
        entries = [e for e in self.problems() if e["files"]]
        if entries:
            self.check_writable()
        for entry in entries:
            with file_lock(self._lock_path(entry["key"])):
                self._settle_locked(entry["key"])
                still = [e for e in self.problems() if e["key"] == entry["key"] and e["files"]]
                if not still:
                    continue
                for path in still[0]["files"]:
                    Path(path).unlink(missing_ok=True)
                removed.append(still[0])
        return removed

    def _verify(self, key: str, data: bytes | None = None) -> tuple[dict | None, str | None]:
        """``(metadata, None)`` when the entry of ``key`` is a model ``load`` accepts; ``(metadata or None, why
        not)`` when files of it are there but it is not; ``(None, None)`` when there is no entry. The metadata
        must be this project's, name this very key (a copy under another model's name is caught here) and
        record the weights' size and sha256 (``data``: the weights' bytes when already read)."""
        meta_path, weights = self.models_dir / f"{key}.json", self.models_dir / f"{key}.safetensors"
        if not os.path.lexists(meta_path):
            return None, ("its weights file has no metadata (a save that was cut short)" if weights.exists() else None)
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None, "its metadata is damaged (not readable JSON)"
        if not _is_our_metadata(meta):
            return None, f"its metadata file {meta_path.name} is not this project's (JSON without a model spec)"
        try:
            own = ModelSpec.from_dict(meta["spec"])
        except (TrendError, TypeError, ValueError):
            return meta, "its metadata holds a model spec this version does not accept"
        recorded = meta.get("key", own.key)
        if recorded != key:
            return meta, (
                f"its metadata is that of another model, {meta.get('name') or own.name} (key {recorded}): the "
                "entry was stored under another model's file name (a copy or restore with names mixed up)"
            )
        if own.key != key:
            return meta, f"its metadata's spec ({own.name}) has another key (an older version of the network)"
        if data is None and not weights.exists():
            return meta, "its metadata has no weights file"
        size = len(data) if data is not None else _size_of(weights)
        if meta.get("weights_bytes") is not None and meta["weights_bytes"] != size:
            return meta, "its weights file does not match the size its metadata records"
        digest = hashlib.sha256(data).hexdigest() if data is not None else _sha256_of(weights)
        if meta.get("weights_sha256") is not None and meta["weights_sha256"] != digest:
            return meta, (
                "its weights are not the ones its metadata records (sha256 differs: overwritten, damaged or "
                "swapped with another model's)"
            )
        return meta, None

    def _checked(self, spec: ModelSpec, data: bytes | None = None) -> dict:
        """The metadata of ``spec``'s entry when ``load`` may use it, else the TrendError that says why not."""
        meta, problem = self._verify(spec.key, data)
        if problem is not None:
            raise TrendError(
                f"Model {spec.name} is damaged or incomplete in the zoo at {self.root}: {problem}; run "
                "`trend zoo clean` to remove it, then train or import it again."
            )
        if meta is None:
            raise TrendError(
                f"Model {spec.name} is not in the zoo at {self.root}; train it with `trend train {spec.name}`."
            )
        return meta

    # -- load / save ------------------------------------------------------------------------------------------
    def load(self, spec: ModelSpec | str, device: str | torch.device = "cpu") -> TrendModel:
        """The trained model in eval mode; a missing, incomplete or damaged checkpoint, or one stored under
        another model's name, is a TrendError (the checks run on the very bytes loaded)."""
        spec = parse_spec(spec)
        self._settle(spec.key)
        path = self._weights_path(spec)
        try:
            data: bytes | None = path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            raise TrendError(f"The checkpoint of {spec.name} ({path}) cannot be read ({exc.strerror}).") from None
        self._checked(spec, data)
        try:
            state = load_bytes(data or b"")
        except (SafetensorError, ValueError) as exc:
            raise TrendError(
                f"The checkpoint of {spec.name} ({path}) is damaged ({exc}); delete it and train again."
            ) from None
        model = build_model(spec)
        _load_state(model, state, spec.name)
        return model.to(device).eval()

    def save(self, spec: ModelSpec, model: torch.nn.Module, metadata: dict | None = None) -> dict:
        """Store a model's weights and metadata atomically as a pair, replacing any older model of ``spec``
        only once the new one is completely written; returns the metadata written."""
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        data = save(state)
        meta = {
            "name": spec.name,
            "key": spec.key,
            "spec": spec.to_dict(),
            "short_name": spec.short_name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": library_versions(),
            **(metadata or {}),
            "weights_sha256": hashlib.sha256(data).hexdigest(),
            "weights_bytes": len(data),
        }
        weights, meta_path = self._weights_path(spec), self._meta_path(spec)
        with file_lock(self._lock_path(spec.key)):
            try:
                atomic_write_bytes(_pending(weights), data)
                atomic_write_json(_pending(meta_path), meta)
                os.replace(_pending(weights), weights)  # from here on the pending metadata finishes the swap
                os.replace(_pending(meta_path), meta_path)
            except OSError as exc:  # the folder changed since the check before the work (full, made read-only)
                raise TrendError(
                    f"{spec.name} could not be saved in {self.models_dir} ({exc.strerror}); free space or make "
                    "the folder writable, then train or import it again."
                ) from None
        return meta

    def delete(self, spec: ModelSpec | str) -> bool:
        spec = parse_spec(spec)
        found = False
        if not self.models_dir.is_dir():
            return False
        self.check_writable()
        with file_lock(self._lock_path(spec.key)):
            for path in (self._weights_path(spec), self._meta_path(spec)):
                if path.exists():
                    path.unlink()
                    found = True
            for path in (_pending(self._weights_path(spec)), _pending(self._meta_path(spec))):
                path.unlink(missing_ok=True)
        return found

    def _settle(self, key: str) -> None:
        """Finish or undo a save that was cut short (only when it left a pending metadata file)."""
        if (self.models_dir / f"{key}.json.new").exists():
            with file_lock(self._lock_path(key)):
                self._settle_locked(key)

    def _settle_locked(self, key: str) -> None:
        meta_path, weights = self.models_dir / f"{key}.json", self.models_dir / f"{key}.safetensors"
        pending_meta, pending_weights = _pending(meta_path), _pending(weights)
        if not pending_meta.exists():
            pending_weights.unlink(missing_ok=True)  # written before its metadata: an unfinished save
            return
        try:
            expected = json.loads(pending_meta.read_text())["weights_sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            expected = None
        if expected is not None and _sha256_of(pending_weights) == expected:
            os.replace(pending_weights, weights)  # both halves were written: finish the swap
            os.replace(pending_meta, meta_path)
        elif expected is not None and _sha256_of(weights) == expected:
            os.replace(pending_meta, meta_path)  # cut between the two renames
            pending_weights.unlink(missing_ok=True)
        else:
            pending_meta.unlink(missing_ok=True)
            pending_weights.unlink(missing_ok=True)

    def get_or_train(
        self,
        spec: ModelSpec | str,
        device: str = "auto",
        progress: Callable | None = None,
        cancel: Callable[[], bool] | None = None,
        retrain: bool = False,
    ) -> TrendModel:
        """Load ``spec`` if the zoo has it, else train it (progress and cancel as in ``train_model``) and save.

        ``retrain``: train even if the zoo has it; the stored model is replaced only when the new one is saved.
        """
        spec = parse_spec(spec)
        if self.has(spec) and not retrain:
            return self.load(spec)
        self.check_writable()
        if spec.pretrained:
            model = build_model(spec)
            self.save(spec, model, {"source": "torchvision", "val_acc": None, "test_acc": None, "train_seconds": 0.0})
            return model.eval()

        if get_executor().distributed:  # trained on a worker; written here (no per-epoch progress from there)
            train_specs(self, [spec], device=device, cancel=cancel)
            return self.load(spec)
        result = train_model(spec, device=device, progress=progress, cancel=cancel)
        self.save(spec, result.model, trained_metadata(result, device))
        return result.model.eval()

    def train_many(
        self,
        specs: Sequence[ModelSpec | str],
        device: str = "auto",
        progress: Callable[[ManyProgress], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        retrain: bool = False,
    ) -> builtins.list[ModelSpec]:
        """Train the ``specs`` the zoo lacks (every one with ``retrain``) and save each as soon as it is done;
        returns the specs trained. Small-image models on the CPU train side by side, one per core, each with the
        weights it gets alone (``trend_core.training.many``); a distributed executor trains them on its workers."""
        chosen = list(dict.fromkeys(parse_spec(s) for s in specs))
        for spec in chosen:  # (get_or_train checks the folder can be written before it writes)
            if spec.pretrained and not self.has(spec):
                self.get_or_train(spec)
        todo = [s for s in chosen if not s.pretrained and (retrain or not self.has(s))]
        if not todo:
            return []
        self.check_writable()
        if get_executor().distributed:  # trained on workers; written here (progress per model, not per epoch)
            total, epochs_done = sum(s.epochs or 1 for s in todo), [0]
            by_name = {s.name: s for s in todo}

            def on_model(step: TrainStep) -> None:
                spec = by_name[step.name]
                epochs_done[0] += spec.epochs or 1
                if progress is not None:
                    position = todo.index(spec) + 1
                    progress(ManyProgress(spec, position, None, epochs_done[0], total, step.done, step.total))

            train_specs(self, todo, device=device, cancel=cancel, progress=on_model)
            return todo

        def save_trained(spec: ModelSpec, result) -> None:
            self.save(spec, result.model, trained_metadata(result, device))

        train_models(todo, save_trained, device=device, progress=progress, cancel=cancel)
        return todo

    def import_state_dict(
        self,
        spec: ModelSpec | str,
        path: str | os.PathLike,
        evaluate: bool = True,
        display_name: str | None = None,
        replace: bool = False,
    ) -> dict:
        """Adopt a user's weights for ``spec`` from a .safetensors or .pt/.pth state_dict (never unpickled as code).

        ``display_name`` is the file's name as the user knows it (an upload lands in a temporary file whose name
        means nothing to them); messages and the model's metadata use it. Weights with non-finite values or of the
        wrong kind of dtype are refused; a model already in the zoo is replaced only with ``replace=True``.
        """
        spec = parse_spec(spec)
        if self.has(spec) and not replace:
            raise TrendError(
                f"{spec.name} is already in the zoo at {self.root}; confirm replacing it "
                "(`--force` on the command line)."
            )
        self.check_writable()
        shown = display_name or Path(path).name
        state = read_state_dict(path, shown)
        model = build_model(spec)
        _load_state(model, state, spec.name, shown)
        _check_values(model, state, spec.name, shown)
        _check_outputs(model, spec, shown)
        meta: dict = {"source": f"imported from {shown}", "origin": IMPORTED, "train_seconds": None}
        if evaluate:
            try:
                data = load_dataset(spec.dataset)
                meta["val_acc"], meta["test_acc"] = accuracy(model, data.val), accuracy(model, data.test)
            except TrendError:
                meta["val_acc"] = meta["test_acc"] = None
        return self.save(spec, model, meta)


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


def _load_state(model: TrendModel, state: dict[str, torch.Tensor], name: str, file: str = "These weights") -> None:
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


def _check_values(model: TrendModel, state: dict[str, torch.Tensor], name: str, filename: str) -> None:
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


def _check_outputs(model: TrendModel, spec: ModelSpec, filename: str) -> None:
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


def _pending(path: Path) -> Path:
    """Where a save writes ``path`` before swapping it in."""
    return path.with_name(path.name + ".new")


_DIGESTS: dict[tuple, str] = {}  # sha256 of weights files by (path, inode, size, mtime, ctime): hashed once


def _sha256_of(path: Path) -> str | None:
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


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


# The files a save writes in the models folder: <key>.json and <key>.safetensors, their pending .new versions,
# and atomic_write_bytes' temporary files (.<key>.<suffix>.new.<random>.tmp); a key is 16 hex digits.
_ENTRY_FILE = re.compile(r"(?P<key>[0-9a-f]{16})\.(?:json|safetensors)(?:\.new)?")
_TEMP_FILE = re.compile(r"\.(?P<key>[0-9a-f]{16})\.(?:json|safetensors)\.new\.[A-Za-z0-9_]+\.tmp")


def _entry_files(models_dir: Path) -> dict[str, builtins.list[Path]]:
    """The files of the models folder named as a save names them, by key (anything else is not the zoo's)."""
    files: dict[str, builtins.list[Path]] = {}
    for path in models_dir.iterdir():
        match = _ENTRY_FILE.fullmatch(path.name) or _TEMP_FILE.fullmatch(path.name)
        if match and not path.is_dir():
            files.setdefault(match["key"], []).append(path)
    return files


def _is_leftover(path: Path) -> bool:
    """A pending half of a save (``.new``) or a save's temporary file."""
    return path.name.endswith(".new") or path.name.endswith(".tmp")


def _is_our_metadata(meta: object) -> bool:
    """Whether JSON content is metadata this project wrote: a dict with a model spec and its name or key."""
    return isinstance(meta, dict) and isinstance(meta.get("spec"), dict) and ("key" in meta or "name" in meta)


def _is_ours(path: Path, entry: builtins.list[Path]) -> bool:
    """Whether ``path`` (one of an ``entry``'s files) was written by this project, by its content as well as its
    name: metadata that reads as ours or not as JSON at all; weights beside our metadata or in the
    safetensors format; leftovers of a save. A user's JSON that happens to carry a key's name is not ours."""
    if _is_leftover(path):
        return True
    if path.suffix == ".json":
        try:
            return _is_our_metadata(json.loads(path.read_text()))
        except (OSError, ValueError):
            return True  # unreadable: a metadata file cut short or damaged (a user's file would be JSON)
    meta = path.with_suffix(".json")
    return (meta in entry and _is_ours(meta, entry)) or _looks_like_safetensors(path)


def _looks_like_safetensors(path: Path) -> bool:
    """Whether the file starts as safetensors files do: an 8-byte header length, then a JSON header."""
    try:
        with path.open("rb") as handle:
            head = handle.read(9)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size


def _complete_meta(meta_path: Path, weights_path: Path) -> dict | None:
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
