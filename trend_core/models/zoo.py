"""The model zoo: trained checkpoints (safetensors) with JSON metadata, addressed by spec key.

Layout under the store root (``$TREND_HOME``, default ``~/.cache/trend``)::

    models/<key>.safetensors   the state_dict, written to a temporary name and renamed (atomic)
    models/<key>.json          spec, name, accuracies, training time, library versions, the weights' sha256

A model exists only when both files are complete and agree (the metadata records the weights' size and
sha256). A save writes both under pending names first and then swaps them in under a per-model lock, so a
retrain or an import killed at any moment leaves the old model or the new one, never a mix or nothing;
a swap cut between its two renames is finished by the next reader. Leftovers and damaged entries are
reported by ``Zoo.problems()`` and removed by ``Zoo.clean()``.

The checkpoint format and the checks of its files are ``models.checkpoints``; training is
``trend_core.training.run``, which the zoo calls for what it lacks and whose models it saves as they land.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save

from trend_core.config.presets import PRESETS  # noqa: F401  (kept here for callers; torch-free so `trend --help` is fast)
from trend_core.config.specs import ModelSpec, parse_spec
from trend_core.config.user_models import UserModelName, is_user_model_name, parse_user_model
from trend_core.data.datasets import load_dataset
from trend_core.errors import TrendError
from trend_core.models import imported
from trend_core.models.checkpoints import (
    IMPORTED,
    atomic_write_bytes,
    atomic_write_json,
    check_outputs,
    check_values,
    complete_meta,
    entry_files,
    is_leftover,
    is_our_metadata,
    is_ours,
    library_versions,
    load_state,
    pending_path,
    read_state_dict,
    sha256_of,
    size_of,
)
from trend_core.nn.build import TrendModel, build_model
from trend_core.runtime.executors import Executor
from trend_core.storage.homes import (  # (default_home: also re-exported)
    MODEL_PARTS,
    check_home,
    default_home,
    home_origin,
)
from trend_core.storage.locks import file_lock
from trend_core.training.many import ManyProgress
from trend_core.training.run import run_training
from trend_core.training.train import EpochReport, accuracy, epoch_logger


def preset_specs(name: str = "digits") -> list[ModelSpec]:
    if name not in PRESETS:
        raise TrendError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return [ModelSpec.parse(n) for n in PRESETS[name]]


def _parsed(name: ModelSpec | UserModelName | str) -> ModelSpec | UserModelName:
    """A spec, or an imported network's name (its dataset may since have been removed: it can still be deleted)."""
    if isinstance(name, ModelSpec):
        return name
    if isinstance(name, UserModelName) or is_user_model_name(name):
        return parse_user_model(name, known_dataset=False)
    return parse_spec(name)


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
    def has(self, spec: ModelSpec | UserModelName | str) -> bool:
        """Whether the zoo holds a complete entry for ``spec`` (weights and metadata, written and the size agreeing),
        so nothing trains over it; ``load`` checks it fully and ``problem`` says why it refuses one. An imported
        network (``user/<dataset>/<name>``) counts when it loads."""
        if isinstance(spec := _parsed(spec), UserModelName):
            return imported.has_network(self, spec)
        self._settle(spec.key)
        return complete_meta(self._meta_path(spec), self._weights_path(spec)) is not None

    def metadata(self, spec: ModelSpec | UserModelName | str) -> dict:
        """The stored metadata of ``spec``, once the entry passes the checks ``load`` makes (else a TrendError)."""
        if isinstance(spec := _parsed(spec), UserModelName):
            return imported.network_metadata(self, spec)
        self._settle(spec.key)
        return self._checked(spec)

    def problem(self, spec: ModelSpec | UserModelName | str) -> str | None:
        """Why ``load`` refuses the zoo's entry for ``spec`` (one clause), or None when it loads or is absent."""
        if isinstance(spec := _parsed(spec), UserModelName):
            return imported.network_problem(self, spec)
        self._settle(spec.key)
        return self._verify(spec.key)[1]

    def list(self, dataset: str | None = None, imported_networks: bool = False) -> list[dict]:
        """Metadata of every model the zoo would load, sorted by name: each entry passes the checks ``load``
        makes (its metadata names its own key, its weights are the ones recorded); ``problems`` has the rest.
        ``imported_networks``: the defender's imported programs too (``user/...``, origin "imported", no spec)."""
        rows: builtins.list[dict] = imported.list_networks(self, dataset) if imported_networks else []
        if self.models_dir.is_dir():
            for key in {p.name.split(".")[0] for p in self.models_dir.glob("*.json.new")}:
                self._settle(key)
            for key in sorted(entry_files(self.models_dir)):
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
        project wrote, found by their name and content; a user's file is never among them). Imported networks
        (models/user/) are checked the same way (``imported.network_problems``)."""
        return self._checkpoint_problems() + imported.network_problems(self)

    def _checkpoint_problems(self) -> builtins.list[dict]:
        if not self.models_dir.is_dir():
            return []
        found = []
        for key, paths in sorted(entry_files(self.models_dir).items()):
            meta, problem = self._verify(key)
            leftovers = [p for p in paths if is_leftover(p)]
            if problem is None:
                if not leftovers:
                    continue
                problem, files = "it has leftovers of an interrupted save", leftovers
            else:
                files = [p for p in paths if is_ours(p, paths)]
            own = isinstance(meta, dict) and meta.get("key", key) == key  # (else the name is another model's)
            name = meta.get("name") if own and isinstance(meta, dict) else None
            found.append({"key": key, "name": name, "problem": problem, "files": sorted(map(str, files))})
        return found

    def clean(self) -> builtins.list[dict]:
        """Remove the files of every entry ``problems`` reports (each under its model's lock), so what is left
        is what ``load`` accepts, plus files this project did not write; returns what was removed (imported
        networks' too)."""
        removed = []
        entries = [e for e in self._checkpoint_problems() if e["files"]]
        if entries:
            self.check_writable()
        for entry in entries:
            with file_lock(self._lock_path(entry["key"])):
                self._settle_locked(entry["key"])
                still = [e for e in self._checkpoint_problems() if e["key"] == entry["key"] and e["files"]]
                if not still:
                    continue
                for path in still[0]["files"]:
                    Path(path).unlink(missing_ok=True)
                removed.append(still[0])
        return removed + imported.clean_networks(self)

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
        if not is_our_metadata(meta):
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
        size = len(data) if data is not None else size_of(weights)
        if meta.get("weights_bytes") is not None and meta["weights_bytes"] != size:
            return meta, "its weights file does not match the size its metadata records"
        digest = hashlib.sha256(data).hexdigest() if data is not None else sha256_of(weights)
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
    def load(self, spec: ModelSpec | UserModelName | str, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The trained model in eval mode; a missing, incomplete or damaged checkpoint, or one stored under
        another model's name, is a TrendError (the checks run on the very bytes loaded). An imported network
        comes as an ``ImportedNetwork`` (pixels in [0, 1] -> logits, labelled by its short name)."""
        if isinstance(spec := _parsed(spec), UserModelName):
            return imported.load_network(self, spec, device)
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
        load_state(model, state, spec.name)
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
                atomic_write_bytes(pending_path(weights), data)
                atomic_write_json(pending_path(meta_path), meta)
                os.replace(pending_path(weights), weights)  # from here on the pending metadata finishes the swap
                os.replace(pending_path(meta_path), meta_path)
            except OSError as exc:  # the folder changed since the check before the work (full, made read-only)
                raise TrendError(
                    f"{spec.name} could not be saved in {self.models_dir} ({exc.strerror}); free space or make "
                    "the folder writable, then train or import it again."
                ) from None
        return meta

    def delete(self, spec: ModelSpec | UserModelName | str) -> bool:
        if isinstance(spec := _parsed(spec), UserModelName):
            return imported.delete_network(self, spec)
        found = False
        if not self.models_dir.is_dir():
            return False
        self.check_writable()
        with file_lock(self._lock_path(spec.key)):
            for path in (self._weights_path(spec), self._meta_path(spec)):
                if path.exists():
                    path.unlink()
                    found = True
            for path in (pending_path(self._weights_path(spec)), pending_path(self._meta_path(spec))):
                path.unlink(missing_ok=True)
        return found

    def _settle(self, key: str) -> None:
        """Finish or undo a save that was cut short (only when it left a pending metadata file)."""
        if (self.models_dir / f"{key}.json.new").exists():
            with file_lock(self._lock_path(key)):
                self._settle_locked(key)

    def _settle_locked(self, key: str) -> None:
        meta_path, weights = self.models_dir / f"{key}.json", self.models_dir / f"{key}.safetensors"
        pending_meta, pending_weights = pending_path(meta_path), pending_path(weights)
        if not pending_meta.exists():
            pending_weights.unlink(missing_ok=True)  # written before its metadata: an unfinished save
            return
        try:
            expected = json.loads(pending_meta.read_text())["weights_sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            expected = None
        if expected is not None and sha256_of(pending_weights) == expected:
            os.replace(pending_weights, weights)  # both halves were written: finish the swap
            os.replace(pending_meta, meta_path)
        elif expected is not None and sha256_of(weights) == expected:
            os.replace(pending_meta, meta_path)  # cut between the two renames
            pending_weights.unlink(missing_ok=True)
        else:
            pending_meta.unlink(missing_ok=True)
            pending_weights.unlink(missing_ok=True)

    def get_or_train(
        self,
        spec: ModelSpec | UserModelName | str,
        device: str = "auto",
        progress: Callable[[EpochReport], None] | Literal["stderr"] | None = "stderr",
        cancel: Callable[[], bool] | None = None,
        retrain: bool = False,
    ) -> torch.nn.Module:
        """Load ``spec`` if the zoo has it, else train it (progress and cancel as in ``train_model``) and save.

        Training says so: by default (``progress="stderr"``) one line on stderr when it starts and one per epoch
        (loss, validation accuracy, seconds), so a notebook or script is not left silent for the tens of seconds
        a model takes; ``progress=None`` trains silently, a function gets each ``EpochReport``.
        ``retrain``: train even if the zoo has it; the stored model is replaced only when the new one is saved.
        An imported network is loaded, never trained (a missing one is a TrendError saying how to import it).
        """
        if isinstance(spec := _parsed(spec), UserModelName):
            return imported.load_network(self, spec)
        if self.has(spec) and not retrain:
            return self.load(spec)
        self.check_writable()
        if spec.pretrained:
            model = build_model(spec)
            self.save(spec, model, {"source": "torchvision", "val_acc": None, "test_acc": None, "train_seconds": 0.0})
            return model.eval()
        if progress == "stderr":
            sys.stderr.write(f"{spec.name} is not in the zoo at {self.root}: training it ({spec.epochs} epochs).\n")
            progress = epoch_logger(spec.name)
        trained: builtins.list[TrendModel] = []

        def keep(trained_spec: ModelSpec, model: TrendModel, meta: dict) -> None:
            self.save(trained_spec, model, meta)
            trained.append(model)

        def on_epoch(step: ManyProgress) -> None:  # (a distributed executor reports whole models only)
            if progress is not None and step.report is not None and step.result is None:
                progress(step.report)

        run_training([spec], keep, device=device, progress=on_epoch, cancel=cancel)
        return trained[0].eval()

    def train_many(
        self,
        specs: Sequence[ModelSpec | str],
        device: str = "auto",
        progress: Callable[[ManyProgress], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        retrain: bool = False,
        executor: Executor | str | None = None,
    ) -> builtins.list[ModelSpec]:
        """Train the ``specs`` the zoo lacks (every one with ``retrain``) and save each as soon as it is done;
        returns the specs trained. Small-image models on the CPU train side by side, one per core, each with the
        weights it gets alone; a distributed ``executor`` (default: the one chosen) trains them on its workers
        (``trend_core.training.run``)."""
        chosen = list(dict.fromkeys(parse_spec(s) for s in specs))
        for spec in chosen:  # (get_or_train checks the folder can be written before it writes)
            if spec.pretrained and not self.has(spec):
                self.get_or_train(spec)
        todo = [s for s in chosen if not s.pretrained and (retrain or not self.has(s))]
        if not todo:
            return []
        self.check_writable()
        run_training(todo, self.save, device=device, progress=progress, cancel=cancel, executor=executor)
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
        load_state(model, state, spec.name, shown)
        check_values(model, state, spec.name, shown)
        check_outputs(model, spec, shown)
        meta: dict = {"source": f"imported from {shown}", "origin": IMPORTED, "train_seconds": None}
        if evaluate:
            try:
                data = load_dataset(spec.dataset)
                meta["val_acc"], meta["test_acc"] = accuracy(model, data.val), accuracy(model, data.test)
            except TrendError:
                meta["val_acc"] = meta["test_acc"] = None
        return self.save(spec, model, meta)

    def import_program(
        self,
        name: UserModelName | str,
        file: str | os.PathLike,
        expects: str = "pixels",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        transform: str | None = None,
        replace: bool = False,
        display_name: str | None = None,
    ) -> dict:
        """Adopt a network defined outside the project, a ``torch.export`` program (.pt2), as ``user/<dataset>/<name>``
        (``models.imported``: checked to load without running code and to fit the dataset; accuracy recorded).
        ``display_name``: the file's name as the user knows it (an upload lands in a temporary file)."""
        return imported.import_program(self, name, file, expects, mean, std, transform, replace, display_name)
