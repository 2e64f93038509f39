"""The model zoo: trained checkpoints (safetensors) with JSON metadata, addressed by spec key.

Layout under the store root (``$TREND_HOME``, default ``~/.cache/trend``)::

    models/<key>.safetensors   the state_dict, written to a temporary name and renamed (atomic)
    models/<key>.json          spec, name, accuracies, training time, library versions

Checkpoints are read with safetensors (no pickle); a user's ``.pt`` state_dict is read with
``torch.load(weights_only=True)``, which refuses arbitrary objects, so a hostile file is never executed.
"""
from __future__ import annotations

import builtins
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from .errors import TrendError
from .nn import TrendModel, build_model
from .specs import ModelSpec, parse_spec

PRESETS = {
    "digits": [
        "digits/resnet18-w0.25/FP/sgd/s0",
        "digits/resnet18-w0.25/Q8/sgd/s0",
        "digits/resnet18-w0.25/Q4/sgd/s0",
        "digits/resnet18-w0.25/Q2/sgd/s0",
        "digits/resnet18-w0.25/Q1/sgd/s0",
        "digits/resnet18-w0.25/HT/sgd/s0",
        "digits/resnet18-w0.25/FP-W2/sgd/s0",
        "digits/resnet18-w0.25/FP-A2/sgd/s0",
        "digits/vgg11_bn-w0.25/FP/sgd/s0",
        "digits/resnet18-w0.25/FP/adam/s0",
        "digits/resnet18-w0.25/FP/sgd/s1",
        "digits/resnet18-w0.25/FP/sgd/s2",
    ],
}


def default_home() -> Path:
    """The store root: $TREND_HOME, else the user's cache directory."""
    env = os.environ.get("TREND_HOME")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trend"


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
    import torchvision  # (only to record its version)

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

    # -- queries ----------------------------------------------------------------------------------------------
    def has(self, spec: ModelSpec | str) -> bool:
        spec = parse_spec(spec)
        return self._weights_path(spec).exists() and self._meta_path(spec).exists()

    def metadata(self, spec: ModelSpec | str) -> dict:
        spec = parse_spec(spec)
        path = self._meta_path(spec)
        if not path.exists():
            raise TrendError(f"Model {spec.name} is not in the zoo at {self.root}; train it with `trend train {spec.name}`.")
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            raise TrendError(f"The metadata of {spec.name} ({path}) is unreadable; delete the model and train it again.") from None

    def list(self, dataset: str | None = None) -> list[dict]:
        """Metadata of every model in the zoo (those with both files), sorted by name."""
        rows = []
        if self.models_dir.exists():
            for meta_path in self.models_dir.glob("*.json"):
                try:
                    meta = json.loads(meta_path.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                if not (self.models_dir / f"{meta_path.stem}.safetensors").exists():
                    continue
                if dataset is None or meta.get("spec", {}).get("dataset") == dataset:
                    rows.append(meta)
        return sorted(rows, key=lambda m: m.get("name", ""))

    def specs(self, dataset: str | None = None) -> builtins.list[ModelSpec]:  # (list: the method above)
        return [ModelSpec.from_dict(m["spec"]) for m in self.list(dataset)]

    # -- load / save ------------------------------------------------------------------------------------------
    def load(self, spec: ModelSpec | str, device: str | torch.device = "cpu") -> TrendModel:
        """The trained model in eval mode; a missing or damaged checkpoint is a TrendError."""
        from safetensors import SafetensorError  # (safetensors loads with the first checkpoint)
        from safetensors.torch import load_file

        spec = parse_spec(spec)
        path = self._weights_path(spec)
        if not path.exists():
            raise TrendError(f"Model {spec.name} is not in the zoo at {self.root}; train it with `trend train {spec.name}`.")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise TrendError(f"The checkpoint of {spec.name} ({path}) is damaged ({exc}); delete it and train again.") from None
        model = build_model(spec)
        _load_state(model, state, spec.name)
        return model.to(device).eval()

    def save(self, spec: ModelSpec, model: torch.nn.Module, metadata: dict | None = None) -> dict:
        """Store a model's weights and metadata atomically; returns the metadata written."""
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        atomic_write_bytes(self._weights_path(spec), save(state))
        meta = {
            "name": spec.name,
            "key": spec.key,
            "spec": spec.to_dict(),
            "short_name": spec.short_name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": library_versions(),
            **(metadata or {}),
        }
        atomic_write_json(self._meta_path(spec), meta)
        return meta

    def delete(self, spec: ModelSpec | str) -> bool:
        spec = parse_spec(spec)
        found = False
        for path in (self._weights_path(spec), self._meta_path(spec)):
            if path.exists():
                path.unlink()
                found = True
        return found

    def get_or_train(self, spec: ModelSpec | str, device: str = "auto",
                     progress: Callable | None = None, cancel: Callable[[], bool] | None = None) -> TrendModel:
        """Load ``spec`` if the zoo has it, else train it (progress and cancel as in ``train_model``) and save."""
        spec = parse_spec(spec)
        if self.has(spec):
            return self.load(spec)
        if spec.pretrained:
            model = build_model(spec)
            self.save(spec, model, {"source": "torchvision", "val_acc": None, "test_acc": None, "train_seconds": 0.0})
            return model.eval()
        from .train import train_model  # (train imports the data loaders; loading a zoo model needs neither)

        result = train_model(spec, device=device, progress=progress, cancel=cancel)
        self.save(spec, result.model, {
            "source": "trained",
            "val_acc": result.val_acc,
            "test_acc": result.test_acc,
            "train_seconds": round(result.train_seconds, 3),
            "device": str(device),
            "history": [{"epoch": h.epoch, "loss": h.loss, "val_acc": h.val_acc} for h in result.history],
        })
        return result.model.eval()

    def import_state_dict(self, spec: ModelSpec | str, path: str | os.PathLike, evaluate: bool = True) -> dict:
        """Adopt a user's weights for ``spec`` from a .safetensors or .pt/.pth state_dict (never unpickled as code)."""
        spec = parse_spec(spec)
        state = read_state_dict(path)
        model = build_model(spec)
        _load_state(model, state, spec.name)
        meta: dict = {"source": f"imported from {Path(path).name}", "train_seconds": None}
        if evaluate:
            from .data import load_dataset
            from .train import accuracy

            try:
                data = load_dataset(spec.dataset)
                meta["val_acc"], meta["test_acc"] = accuracy(model, data.val), accuracy(model, data.test)
            except TrendError:
                meta["val_acc"] = meta["test_acc"] = None
        return self.save(spec, model, meta)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read tensors from a .safetensors file or a weights-only torch file; anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise TrendError(f"No weights file at {path}.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise TrendError(f"{path.name} is not a valid safetensors file ({exc}).") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for hostile pickles, RuntimeError/EOFError for damaged files
        raise TrendError(
            f"{path.name} could not be read as a plain state_dict (it is damaged or holds code-carrying "
            f"objects, which are refused): {str(exc).splitlines()[0][:160]}"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TrendError(f"{path.name} does not hold a state_dict (a mapping of names to tensors).")
    return obj


def _load_state(model: TrendModel, state: dict[str, torch.Tensor], name: str) -> None:
    """Load into ``model``; accepts keys of the whole model or of the bare network; explains mismatches."""
    if state and not any(k.startswith("net.") for k in state):
        state = {f"net.{k.removeprefix('module.')}": v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"shape mismatch in {len(wrong)} tensors (first: {wrong[0]})")
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[0]})")
        raise TrendError(f"These weights do not fit {name}: " + "; ".join(parts) + ".")
    model.load_state_dict(state)
