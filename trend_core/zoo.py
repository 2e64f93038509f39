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
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save

from .data import load_dataset
from .errors import TrendError
from .executors import get_executor
from .homes import default_home  # noqa: F401  (re-exported: the zoo's root)
from .locks import file_lock
from .nn import TrendModel, build_model
from .presets import PRESETS  # noqa: F401  (kept here for callers; torch-free so `trend --help` is fast)
from .scale import TrainStep, train_specs
from .specs import ModelSpec, parse_spec
from .train import accuracy, train_model, trained_metadata
from .train_many import ManyProgress, train_models


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
        self.root = Path(root).expanduser() if root else default_home()
        self.models_dir = self.root / "models"

    # -- paths ----------------------------------------------------------------------------------------------
    def _weights_path(self, spec: ModelSpec) -> Path:
        return self.models_dir / f"{spec.key}.safetensors"

    def _meta_path(self, spec: ModelSpec) -> Path:
        return self.models_dir / f"{spec.key}.json"

    def _lock_path(self, key: str) -> Path:
        return self.models_dir / ".locks" / f"{key}.lock"

    # -- queries ----------------------------------------------------------------------------------------------
    def has(self, spec: ModelSpec | str) -> bool:
        """Whether the zoo holds a complete model for ``spec`` (weights and metadata, written and agreeing)."""
        spec = parse_spec(spec)
        self._settle(spec.key)
        return _complete_meta(self._meta_path(spec), self._weights_path(spec)) is not None

    def metadata(self, spec: ModelSpec | str) -> dict:
        spec = parse_spec(spec)
        self._settle(spec.key)
        path = self._meta_path(spec)
        if not path.exists():
            raise TrendError(
                f"Model {spec.name} is not in the zoo at {self.root}; train it with `trend train {spec.name}`."
            )
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            raise TrendError(
                f"The metadata of {spec.name} ({path}) is unreadable; delete the model and train it again."
            ) from None

    def list(self, dataset: str | None = None) -> list[dict]:
        """Metadata of every complete model in the zoo, sorted by name (see ``problems`` for the rest)."""
        rows = []
        if self.models_dir.exists():
            for key in {p.name.split(".")[0] for p in self.models_dir.glob("*.json.new")}:
                self._settle(key)
            for meta_path in self.models_dir.glob("*.json"):
                meta = _complete_meta(meta_path, self.models_dir / f"{meta_path.stem}.safetensors")
                if meta is None:
                    continue
                if dataset is None or meta.get("spec", {}).get("dataset") == dataset:
                    rows.append(meta)
        return sorted(rows, key=lambda m: m.get("name", ""))

    def specs(self, dataset: str | None = None) -> builtins.list[ModelSpec]:  # (list: the method above)
        return [ModelSpec.from_dict(m["spec"]) for m in self.list(dataset)]

    def problems(self) -> builtins.list[dict]:
        """Entries of the models folder that are not complete models: one dict per key with ``key``, ``name``
        (when the metadata says it), ``problem`` (one sentence) and ``files`` (what ``clean`` would remove)."""
        if not self.models_dir.exists():
            return []
        files: dict[str, list[Path]] = {}
        for path in self.models_dir.iterdir():
            if path.is_file() and not path.name.startswith(".") and path.name.split(".")[0]:
                files.setdefault(path.name.split(".")[0], []).append(path)
        found = []
        for key, paths in sorted(files.items()):
            meta_path, weights_path = self.models_dir / f"{key}.json", self.models_dir / f"{key}.safetensors"
            pending = [p for p in paths if p.name.endswith(".new")]
            problem, name = None, None
            if meta_path.exists():
                try:
                    meta = json.loads(meta_path.read_text())
                    name = meta.get("name") if isinstance(meta, dict) else None
                    if not isinstance(meta, dict) or "spec" not in meta:
                        raise ValueError("no spec")
                except (OSError, ValueError):
                    problem = "its metadata is damaged (not readable JSON with a spec)"
                else:
                    if not weights_path.exists():
                        problem = "its metadata has no weights file"
                    elif _complete_meta(meta_path, weights_path) is None:
                        problem = "its weights file does not match the size its metadata records"
            elif weights_path.exists():
                problem = "its weights file has no metadata (a save that was cut short)"
            if problem is None and pending:
                problem = "it has leftovers of an interrupted save"
            if problem is not None:
                found.append({"key": key, "name": name, "problem": problem, "files": sorted(map(str, paths))})
        return found

    def clean(self) -> builtins.list[dict]:
        """Remove every entry ``problems`` reports (each under its model's lock); returns what was removed."""
        removed = []
        for entry in self.problems():
            with file_lock(self._lock_path(entry["key"])):
                self._settle_locked(entry["key"])
                still = [e for e in self.problems() if e["key"] == entry["key"]]
                if not still:
                    continue
                for path in still[0]["files"]:
                    Path(path).unlink(missing_ok=True)
                removed.append(still[0])
        return removed

    # -- load / save ------------------------------------------------------------------------------------------
    def load(self, spec: ModelSpec | str, device: str | torch.device = "cpu") -> TrendModel:
        """The trained model in eval mode; a missing, incomplete or damaged checkpoint is a TrendError."""
        spec = parse_spec(spec)
        path = self._weights_path(spec)
        if not self.has(spec):
            if path.exists() or self._meta_path(spec).exists():
                raise TrendError(
                    f"Model {spec.name} is incomplete in the zoo at {self.root} (a save was cut short "
                    f"or a file is damaged); run `trend zoo clean` and train it again."
                )
            raise TrendError(
                f"Model {spec.name} is not in the zoo at {self.root}; train it with `trend train {spec.name}`."
            )
        expected = self.metadata(spec).get("weights_sha256")
        try:
            data = path.read_bytes()
            if expected is not None and hashlib.sha256(data).hexdigest() != expected:
                raise ValueError("its sha256 differs from the one recorded at save")
            state = load_bytes(data)
        except (SafetensorError, OSError, ValueError) as exc:
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
            atomic_write_bytes(_pending(weights), data)
            atomic_write_json(_pending(meta_path), meta)
            os.replace(_pending(weights), weights)  # from here on the pending metadata finishes the swap
            os.replace(_pending(meta_path), meta_path)
        return meta

    def delete(self, spec: ModelSpec | str) -> bool:
        spec = parse_spec(spec)
        found = False
        if not self.models_dir.is_dir():
            return False
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
        weights it gets alone (``trend_core.train_many``); a distributed executor trains them on its workers."""
        chosen = list(dict.fromkeys(parse_spec(s) for s in specs))
        for spec in chosen:
            if spec.pretrained and not self.has(spec):
                self.get_or_train(spec)
        todo = [s for s in chosen if not s.pretrained and (retrain or not self.has(s))]
        if not todo:
            return []
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
        shown = display_name or Path(path).name
        state = read_state_dict(path, shown)
        model = build_model(spec)
        _load_state(model, state, spec.name, shown)
        _check_values(model, state, spec.name, shown)
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


def _pending(path: Path) -> Path:
    """Where a save writes ``path`` before swapping it in."""
    return path.with_name(path.name + ".new")


def _sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


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
