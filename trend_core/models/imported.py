"""A defender's own networks in the zoo: ``torch.export`` programs (``.pt2``) named ``user/<dataset>/<name>``.

The network is defined outside the project, so the zoo keeps the checked program itself (never a pickle: see
``models.exported``) with a metadata JSON saying what it expects, and wraps it on load into the engine's
contract, pixels in [0, 1] -> logits::

    models/user/<dataset>/<name>.pt2    the program, copied atomically
    models/user/<dataset>/<name>.json   origin "imported", expects, mean/std, transform, sha256, source file,
                                        clean test accuracy, label

``expects``: "pixels" (the network takes [0, 1] images) or "normalized" (it takes (x - mean) / std, one mean and
std per channel; the loaded model normalizes itself). ``transform``: an input defence the network was trained
behind, run in the forward pass with its BPDA backward, from the project's own input quantizers (TRANSFORMS).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Protocol, Sequence

import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from trend_core.config.datasets import DatasetInfo, get_info
from trend_core.config.labels import set_label
from trend_core.config.user_models import PROGRAM_SUFFIX, USER_PREFIX, UserModelName, parse_user_model
from trend_core.data.datasets import load_dataset
from trend_core.errors import TrendError
from trend_core.models.checkpoints import (
    IMPORTED,
    atomic_write_bytes,
    atomic_write_json,
    is_leftover,
    library_versions,
    pending_path,
    sha256_of,
)
from trend_core.models.exported import check_program_archive, load_program
from trend_core.nn.build import Preprocess
from trend_core.storage.locks import file_lock
from trend_core.training.train import accuracy

EXPECTS = ("pixels", "normalized")
# The input transforms an imported network may sit behind (the project's input quantizers, BPDA backward):
TRANSFORMS = {
    **{f"quant:{n}": f"Q{n}" for n in range(1, 9)},  # n-bit input quantization, identity (straight-through) backward
    "halftone": "HT",  # the TREND authors' halftoning (0/1 images), smooth sigmoid backward
}
ACCURACY_IMAGES = 2000  # the clean test accuracy recorded at import: the first this many test images
PROBE_IMAGES = 32


class Zoo(Protocol):
    """Where the zoo keeps its models (``models.zoo.Zoo``, which calls this module: no import back)."""

    root: Path
    models_dir: Path

    def check_writable(self) -> None: ...


class ImportedNetwork(nn.Module):
    """An imported program as an engine model: pixels in [0, 1] -> normalization (identity for "pixels") and the
    optional input transform (``Preprocess``) -> the program's logits. ``spec`` is its UserModelName."""

    def __init__(self, net: nn.Module, name: UserModelName, mean: Sequence[float], std: Sequence[float], quant: str):
        super().__init__()
        self.preprocess = Preprocess(mean, std, quant)
        self.net = net
        self.spec = name
        set_label(self, name.short_name)  # tables and charts show the defender's short name

    @property
    def name(self) -> str:
        return self.spec.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))

    def train(self, mode: bool = True) -> ImportedNetwork:
        """Only the wrapper switches: the program runs as exported (in eval mode; some refuse the switch)."""
        self.training = mode
        self.preprocess.train(mode)
        return self


def transform_quant(transform: str | None) -> str:
    """The input quantization code (``Preprocess``'s) of a transform name; None is none ("FP")."""
    if transform is None:
        return "FP"
    if transform not in TRANSFORMS:
        raise TrendError(
            f"Unknown input transform {transform!r}; choose quant:1 ... quant:8 (n-bit input quantization) or halftone."
        )
    return TRANSFORMS[transform]


def normalization(info: DatasetInfo, expects: str, mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the wrapper applies: zeros and ones for "pixels"; the given ones, checked, for "normalized"."""
    channels = info.input_shape[0]
    if expects not in EXPECTS:
        raise TrendError(f"expects must be pixels or normalized, got {expects!r}.")
    if expects == "pixels":
        if mean is not None or std is not None:
            raise TrendError("mean and std are for a network that expects normalized inputs (--expects normalized).")
        return (0.0,) * channels, (1.0,) * channels
    if mean is None or std is None:
        raise TrendError(
            f"A network that expects normalized inputs needs its mean and std, one per channel ({channels} for "
            f"{info.name}), e.g. --mean {' '.join(['0.5'] * channels)} --std {' '.join(['0.25'] * channels)}."
        )
    try:
        mean_t, std_t = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise TrendError("mean and std must be numbers, one per channel.") from None
    if len(mean_t) != channels or len(std_t) != channels:
        raise TrendError(
            f"{info.name} images have {channels} channel{'s' if channels > 1 else ''}, so give {channels} mean and "
            f"{channels} std value{'s' if channels > 1 else ''}; got {len(mean_t)} and {len(std_t)}."
        )
    if not all(v == v and abs(v) != float("inf") for v in mean_t + std_t) or min(std_t) <= 0:
        raise TrendError("mean values must be finite and every std positive.")
    return mean_t, std_t


def _shape_text(shape: Sequence) -> str:
    return "x".join(str(d) for d in shape)


def expected_image_shape(net: nn.Module, shown: str) -> tuple | None:
    """The image shape (C, H, W) the program was exported for, from its one input's recorded shape (None: not
    recorded); a program with other than one input is refused."""
    graph = getattr(net, "graph", None)
    if graph is None:
        return None
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise TrendError(f"{shown} takes {len(inputs)} inputs; import a network that takes one batch of images.")
    value = inputs[0].meta.get("val")
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    return tuple(int(d) if isinstance(d, int) else str(d) for d in shape)[1:]


def check_network(model: ImportedNetwork, info: DatasetInfo, x: torch.Tensor, shown: str) -> None:
    """Run the wrapped program on a batch of the dataset's images; an input-size or class-count mismatch, a
    failure or non-finite outputs are a TrendError in one sentence."""
    want = _shape_text(info.input_shape)
    expected = expected_image_shape(model.net, shown)
    known = expected is not None and len(expected) == 3 and all(isinstance(d, int) for d in expected)
    if known and tuple(expected or ()) != tuple(info.input_shape):
        raise TrendError(
            f"{shown} expects {_shape_text(expected or ())} images but {info.name} images are {want}; "
            "export the network for that image size or pick its dataset."
        )
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # noqa: BLE001  (a program's shape guard or op failure; its type varies)
        raise TrendError(
            f"{shown} fails on a batch of {info.name} images ({want}): {str(exc).splitlines()[0][:160]}."
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(x):
        got = _shape_text(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TrendError(f"{shown} returns {got} for a batch of {len(x)} images, not one row of logits per image.")
    if out.shape[1] != info.num_classes:
        raise TrendError(
            f"{shown} gives {out.shape[1]} outputs per image but {info.name} has {info.num_classes} classes; "
            "import a network trained on those classes."
        )
    if not bool(torch.isfinite(out).all()):
        raise TrendError(f"{shown} gives non-finite outputs (NaN or infinity) on {info.name} images.")


def _paths(zoo: Zoo, name: UserModelName) -> tuple[Path, Path]:
    folder = zoo.models_dir / USER_PREFIX / name.dataset
    return folder / f"{name.slug}{PROGRAM_SUFFIX}", folder / f"{name.slug}.json"


def _lock(zoo: Zoo, name: UserModelName) -> Path:
    return zoo.models_dir / ".locks" / f"{name.key}.lock"


def import_program(
    zoo: Zoo,
    name: str | UserModelName,
    file: str | os.PathLike,
    expects: str = "pixels",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    transform: str | None = None,
    replace: bool = False,
    display_name: str | None = None,
) -> dict:
    """Check ``file`` (a .pt2 that loads without running code), run it on the dataset's images, measure its clean
    test accuracy and store it under ``name``; returns the metadata written. Nothing is written on a refusal."""
    name = parse_user_model(name)
    shown = display_name or Path(file).name
    info = get_info(name.dataset)
    mean_t, std_t = normalization(info, expects, mean, std)
    quant = transform_quant(transform)
    if has_network(zoo, name) and not replace:
        raise TrendError(
            f"{name.name} is already in the zoo at {zoo.root}; confirm replacing it (`--force` on the command line)."
        )
    zoo.check_writable()
    if Path(file).suffix != PROGRAM_SUFFIX:
        raise TrendError(
            f"{shown} is not a .pt2 file; save your network with "
            "torch.export.save(torch.export.export(net.eval(), (example,)), 'net.pt2')."
        )
    check_program_archive(file, shown)
    data = Path(file).read_bytes()
    model = ImportedNetwork(load_program(file, shown), name, mean_t, std_t, quant)
    try:
        bundle = load_dataset(name.dataset)
        x, y = bundle.tensors("test", limit=ACCURACY_IMAGES)
    except TrendError:  # the dataset's images are not on this machine: a seeded random batch of its shape
        x, y = torch.rand((PROBE_IMAGES, *info.input_shape), generator=torch.Generator().manual_seed(0)), None
    check_network(model, info, x[:PROBE_IMAGES], shown)
    with torch.no_grad():
        test_acc = None if y is None else accuracy(model, TensorDataset(x, y))
    meta = {
        "name": name.name,
        "short_name": name.short_name,
        "dataset": name.dataset,
        "origin": IMPORTED,
        "kind": "program",
        "source": f"imported from {shown}",
        "source_file": shown,
        "expects": expects,
        "mean": list(mean_t) if expects == "normalized" else None,
        "std": list(std_t) if expects == "normalized" else None,
        "transform": transform,
        "val_acc": None,
        "test_acc": test_acc,
        "test_images": None if y is None else len(y),
        "train_seconds": None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "versions": library_versions(),
        "program_sha256": hashlib.sha256(data).hexdigest(),
        "program_bytes": len(data),
    }
    program, meta_path = _paths(zoo, name)
    with file_lock(_lock(zoo, name)):
        try:
            atomic_write_bytes(pending_path(program), data)
            atomic_write_json(pending_path(meta_path), meta)
            os.replace(pending_path(program), program)  # from here on the pending metadata finishes the swap
            os.replace(pending_path(meta_path), meta_path)
        except OSError as exc:
            raise TrendError(
                f"{name.name} could not be saved in {zoo.models_dir} ({exc.strerror}); free space or make the "
                "folder writable, then import it again."
            ) from None
    return meta


def _settle(zoo: Zoo, name: UserModelName) -> None:
    """Finish a save cut between its two renames (the pending metadata records the program now in place)."""
    if pending_path(_paths(zoo, name)[1]).exists():
        with file_lock(_lock(zoo, name)):
            _settle_locked(zoo, name)


def _settle_locked(zoo: Zoo, name: UserModelName) -> None:
    program, meta_path = _paths(zoo, name)
    pending = pending_path(meta_path)
    if pending.exists():
        try:
            expected = json.loads(pending.read_text())["program_sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            expected = None
        if expected is not None and sha256_of(pending_path(program)) == expected:
            os.replace(pending_path(program), program)
        if expected is not None and sha256_of(program) == expected:
            os.replace(pending, meta_path)
        else:
            pending.unlink(missing_ok=True)
            pending_path(program).unlink(missing_ok=True)


def _verify(zoo: Zoo, name: UserModelName) -> tuple[dict | None, str | None]:
    """(metadata, None) when the entry loads; (metadata or None, why not) when its files are there but it does
    not; (None, None) when there is no entry."""
    program, meta_path = _paths(zoo, name)
    if not meta_path.exists():
        return None, ("its program has no metadata (an import that was cut short)" if program.exists() else None)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None, "its metadata is damaged (not readable JSON)"
    if not isinstance(meta, dict) or meta.get("name") != name.name:
        return None, f"its metadata {meta_path.name} is not that of {name.name}"
    if sha256_of(program) != meta.get("program_sha256"):
        return meta, "its program file is missing or not the one its metadata records (sha256 differs)"
    return meta, None


def network_metadata(zoo: Zoo, name: str | UserModelName) -> dict:
    """The stored metadata of an imported network that loads, else a TrendError saying why not."""
    name = parse_user_model(name, known_dataset=False)
    _settle(zoo, name)
    meta, problem = _verify(zoo, name)
    if problem is not None:
        raise TrendError(
            f"The imported network {name.name} is damaged in the zoo at {zoo.root}: {problem}; import it again "
            "with `trend zoo import ... --force`."
        )
    if meta is None:
        raise TrendError(
            f"{name.name} is not in the zoo at {zoo.root}; import it with "
            f"`trend zoo import {name.name} FILE.pt2 --expects pixels` (an imported network is not trained here)."
        )
    return meta


def has_network(zoo: Zoo, name: str | UserModelName) -> bool:
    name = parse_user_model(name, known_dataset=False)
    _settle(zoo, name)
    meta, problem = _verify(zoo, name)
    return meta is not None and problem is None


def network_problem(zoo: Zoo, name: str | UserModelName) -> str | None:
    name = parse_user_model(name, known_dataset=False)
    _settle(zoo, name)
    return _verify(zoo, name)[1]


def load_network(zoo: Zoo, name: str | UserModelName, device: str | torch.device = "cpu") -> ImportedNetwork:
    """The imported network in eval mode, pixels in [0, 1] -> logits, checked against its recorded sha256."""
    name = parse_user_model(name, known_dataset=False)
    meta = network_metadata(zoo, name)
    info = get_info(name.dataset)
    mean, std = normalization(info, meta.get("expects", "pixels"), meta.get("mean"), meta.get("std"))
    model = ImportedNetwork(load_program(_paths(zoo, name)[0]), name, mean, std, transform_quant(meta.get("transform")))
    return model.to(device).eval()


def list_networks(zoo: Zoo, dataset: str | None = None) -> builtins.list[dict]:
    """Metadata of every imported network that loads (of ``dataset`` when given)."""
    root = zoo.models_dir / USER_PREFIX
    rows = []
    if root.is_dir():
        for meta_path in sorted(root.glob(f"{dataset or '*'}/*.json")):
            try:
                name = parse_user_model(UserModelName(meta_path.parent.name, meta_path.stem), known_dataset=False)
            except TrendError:
                continue
            _settle(zoo, name)
            meta, problem = _verify(zoo, name)
            if meta is not None and problem is None:
                rows.append(meta)
    return rows


def delete_network(zoo: Zoo, name: str | UserModelName) -> bool:
    """Remove an imported network's files; whether there were any."""
    name = parse_user_model(name, known_dataset=False)
    program, meta_path = _paths(zoo, name)
    if not program.parent.is_dir():
        return False
    zoo.check_writable()
    found = False
    with file_lock(_lock(zoo, name)):
        for path in (program, meta_path):
            if path.exists():
                path.unlink()
                found = True
        for path in (pending_path(program), pending_path(meta_path)):
            path.unlink(missing_ok=True)
    return found


_ENTRY = re.compile(r"\.?(?P<slug>[a-z][a-z0-9_-]{0,39})\.(?:pt2|json)(?:\.new)?(?:\.[A-Za-z0-9_]+\.tmp)?")


def _entries(zoo: Zoo) -> dict[UserModelName, builtins.list[Path]]:
    """The files under models/user/ named as an import names them (program, metadata, their pending halves and
    temporary files), by network; anything else there is not the zoo's and is left out."""
    found: dict[UserModelName, builtins.list[Path]] = {}
    root = zoo.models_dir / USER_PREFIX
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            match = _ENTRY.fullmatch(path.name)
            if match is None or path.is_dir() or path.name.startswith(".") != path.name.endswith(".tmp"):
                continue
            try:
                name = parse_user_model(UserModelName(folder.name, match["slug"]), known_dataset=False)
            except TrendError:
                continue
            found.setdefault(name, []).append(path)
    return found


def _is_ours(meta_path: Path) -> bool:
    """Whether an imported network's metadata file was written here: unreadable (cut short or damaged: a user's
    own file would be JSON) or JSON recording an imported program; a user's other JSON is not."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return True
    return isinstance(meta, dict) and meta.get("origin") == IMPORTED and "program_sha256" in meta


def _entry_problem(zoo: Zoo, name: UserModelName) -> dict | None:
    """``Zoo.problems``' row for one imported network (None when it loads and has no leftovers)."""
    program, meta_path = _paths(zoo, name)
    files = [p for p in _entries(zoo).get(name, []) if p.exists()]
    leftovers = [p for p in files if is_leftover(p)]
    problem = _verify(zoo, name)[1]
    if problem is None:
        if not leftovers:
            return None
        problem, files = "it has leftovers of an interrupted import", leftovers
    elif not meta_path.exists() or _is_ours(meta_path):  # a program beside metadata that is not ours stays
        files = leftovers + [p for p in (program, meta_path) if p.exists()]
    else:
        files = leftovers
    return {"key": name.key, "name": name.name, "problem": problem, "files": sorted(map(str, files))}


def network_problems(zoo: Zoo) -> builtins.list[dict]:
    """Imported networks that ``load_network`` refuses or that have leftovers of an interrupted import, as
    ``Zoo.problems`` rows (``files``: what ``clean_networks`` removes, only files an import writes)."""
    rows = []
    for name in _entries(zoo):
        _settle(zoo, name)  # a swap cut between its renames is finished, not reported
        row = _entry_problem(zoo, name)
        if row is not None:
            rows.append(row)
    return rows


def clean_networks(zoo: Zoo) -> builtins.list[dict]:
    """Remove the files of every imported network ``network_problems`` reports, each under its network's lock
    (an import running meanwhile finishes first); returns the rows removed."""
    entries = [row for row in network_problems(zoo) if row["files"]]
    if entries:
        zoo.check_writable()
    removed = []
    for row in entries:
        name = parse_user_model(row["name"], known_dataset=False)
        with file_lock(_lock(zoo, name)):
            _settle_locked(zoo, name)
            still = _entry_problem(zoo, name)
            if still is None or not still["files"]:
                continue
            for path in still["files"]:
                Path(path).unlink(missing_ok=True)
            removed.append(still)
    return removed
