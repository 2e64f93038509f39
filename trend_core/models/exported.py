"""Networks from outside the project as ``torch.export`` programs (``.pt2``), read without running code.

``torch.export.load`` can unpickle parts of an archive (weights or constants marked ``use_pickle``, opaque
objects, legacy weight files, sample inputs that need ``weights_only=False``), and unpickling runs code. So an
archive is checked first (``check_program_archive``): its graph is JSON naming operators, its tensors must be
raw bytes described by JSON, its sample inputs must load with ``weights_only=True``; anything else is refused
with one sentence before torch reads it. TorchScript is not offered (its archives carry code for the
TorchScript interpreter and it is deprecated in favour of ``torch.export``); ONNX would need a converter to
get gradients back, so it is not offered either.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import torch
import torch.nn as nn

from trend_core.errors import TrendError
from trend_core.models.checkpoints import atomic_write_bytes

_TENSOR_PREFIXES = {"weights": "weight_", "constants": "tensor_"}


def _archive_files(archive: zipfile.ZipFile) -> dict[str, str]:
    """Archive member names without their root folder (torch writes ``<root>/models/model.json``)."""
    files = {}
    for name in archive.namelist():
        root, _, rest = name.partition("/")
        files[rest or root] = name
    return files


def check_program_archive(path: str | os.PathLike, display_name: str | None = None) -> None:
    """A TrendError unless ``path`` is a ``torch.export`` archive whose loading runs no pickled code (messages name
    it ``display_name``: an upload's own name, not the temporary file's)."""
    path = Path(path)
    shown = display_name or path.name
    if not path.is_file():
        raise TrendError(f"No model file at {path}.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise TrendError(
            f"{shown} is not a torch.export program (.pt2): save your network with "
            "torch.export.save(torch.export.export(net, (example,)), 'net.pt2')."
        ) from None
    with archive:
        files = _archive_files(archive)
        if files.get("archive_format") is None or archive.read(files["archive_format"]).strip() != b"pt2":
            raise TrendError(
                f"{shown} is not a torch.export program of the current format (a plain torch.save checkpoint or an "
                "old archive); export it again with torch.export.save."
            )
        programs = sorted(n for n in files if n.startswith("models/") and n.endswith(".json"))
        if programs != ["models/model.json"]:
            raise TrendError(f"{shown} holds {len(programs)} programs; import a file with exactly one network.")
        for legacy in ("data/weights/model.pt", "data/constants/model.pt"):
            if legacy in files:
                raise TrendError(f"{shown} stores its tensors as a pickle ({legacy}), which could run code; refused.")
        for kind, prefix in _TENSOR_PREFIXES.items():
            config_name = f"data/{kind}/model_{kind}_config.json"
            if config_name not in files:
                raise TrendError(
                    f"{shown} has no {kind} table ({config_name}); export it again with torch.export.save."
                )
            try:
                config = json.loads(archive.read(files[config_name]))["config"]
            except (ValueError, KeyError, TypeError):
                raise TrendError(f"{shown} has an unreadable {kind} table; the file is damaged.") from None
            for name, entry in config.items():
                pickled = not isinstance(entry, dict) or entry.get("use_pickle") is not False
                if pickled or not str(entry.get("path_name", "")).startswith(prefix) or not entry.get("tensor_meta"):
                    raise TrendError(
                        f"{shown} stores {kind[:-1]} {name!r} as a pickled object, which could run code when "
                        "loaded; refused (export a network whose parameters and buffers are plain tensors)."
                    )
        sample = files.get("data/sample_inputs/model.pt")
        if sample is not None:
            try:
                torch.load(io.BytesIO(archive.read(sample)), weights_only=True)
            except Exception:  # noqa: BLE001  (any failure: torch would retry with weights_only=False)
                raise TrendError(
                    f"{shown}'s example inputs are a pickle that needs arbitrary code to load; refused."
                ) from None


def load_program(path: str | os.PathLike, display_name: str | None = None) -> nn.Module:
    """The network a checked ``.pt2`` archive holds, as an eval-mode ``nn.Module`` (its own input contract)."""
    check_program_archive(path, display_name)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001  (torch raises many types for a damaged archive)
        raise TrendError(
            f"{display_name or Path(path).name} could not be read as a torch.export program ({exc.__class__.__name__})."
        ) from None
    module = program.module()
    _eval_mode(module)
    return module


def _eval_mode(module: nn.Module) -> None:
    """Eval mode where the exported module allows the switch (a program exported in eval mode already runs its
    BatchNorm on running statistics, so a refusal changes nothing)."""
    try:
        module.eval()
    except (NotImplementedError, RuntimeError):
        pass


def save_program(module: nn.Module, example: torch.Tensor, path: str | os.PathLike) -> Path:
    """Export ``module`` (batch dimension dynamic) to ``path`` atomically; returns the path."""
    path = Path(path)
    batch = torch.export.Dim("batch", min=1, max=2**16)
    with torch.no_grad():
        try:
            program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},))
        except torch._dynamo.exc.UserError:  # a member (an imported program) bounds the batch itself: take its range
            program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path
