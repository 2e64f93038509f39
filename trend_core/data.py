"""Dataset registry: the embedded digits, CIFAR-10/100 and ImageNet (ImageFolder), with fixed splits.

Every dataset yields images in [0, 1] (N, C, H, W) float tensors and integer labels; normalization belongs
to the model. ``get_info`` describes a dataset without touching the disk; ``load_dataset`` loads it.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .errors import TrendError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and an attack need to know about a dataset."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_eps: float
    eps_range: tuple[float, float]  # a sensible span for eps sweeps and the TM(eps) fit
    class_names: tuple[str, ...] = field(default=(), repr=False)
    augment_padding: int = 0  # training augmentation: random shift by up to this many pixels (0: none)
    augment_flip: bool = False  # and random horizontal flips (not for digits: a flipped 2 is no 2)

    @property
    def image_size(self) -> int:
        return self.input_shape[1]


# digits: 8x8 images with 17 grey levels. At eps = 0.1 (1.6 grey levels) PGD-40 fools most full-precision
# models but not all of them (see README); at CIFAR's 8/255 it fools almost none.
DIGITS_EPS = 0.1

_INFOS = {
    "digits": DatasetInfo(
        "digits",
        10,
        (1, 8, 8),
        (0.3055,),
        (0.3844,),
        DIGITS_EPS,
        (0.02, 0.3),
        tuple(str(i) for i in range(10)),
        augment_padding=1,
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        10,
        (3, 32, 32),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        8 / 255,
        (1 / 255, 16 / 255),
        CIFAR10_CLASSES,
        4,
        True,
    ),
    "cifar100": DatasetInfo(
        "cifar100",
        100,
        (3, 32, 32),
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        8 / 255,
        (1 / 255, 16 / 255),
        tuple(f"class{i}" for i in range(100)),
        4,
        True,
    ),
    "imagenet": DatasetInfo(
        "imagenet",
        1000,
        (3, 224, 224),
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        8 / 255,
        (1 / 255, 16 / 255),
        tuple(f"class{i}" for i in range(1000)),
    ),
}


def get_info(name: str) -> DatasetInfo:
    """Describe a dataset by name (no disk access)."""
    try:
        return _INFOS[name]
    except KeyError:
        raise TrendError(f"Unknown dataset {name!r}; choose one of {', '.join(_INFOS)}.") from None


def list_datasets() -> list[str]:
    return list(_INFOS)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where CIFAR/ImageNet are looked for: the argument, else $TREND_DATA, else ~/.cache/trend/data."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get("TREND_DATA")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trend" / "data"


@dataclass
class DatasetBundle:
    """Train / validation / test splits of one dataset, each a torch Dataset of ([0,1] image, label)."""

    info: DatasetInfo
    train: Dataset
    val: Dataset
    test: Dataset

    def split(self, name: str) -> Dataset:
        if name not in ("train", "val", "test"):
            raise TrendError(f"Unknown split {name!r}; choose train, val or test.")
        return getattr(self, name)

    def tensors(self, split: str = "test", limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``limit`` images of a split as (x in [0, 1], y) tensors (the evaluation subset)."""
        dataset = self.split(split)
        count = len(dataset) if limit is None else min(int(limit), len(dataset))
        if limit is not None and limit <= 0:
            raise TrendError(f"The image limit must be positive, got {limit}.")
        if isinstance(dataset, TensorDataset):
            x, y = dataset.tensors
            return as_float_images(x[:count]), y[:count].long()
        items = [dataset[i] for i in range(count)]
        return torch.stack([torch.as_tensor(a) for a, _ in items]).float(), torch.tensor([int(b) for _, b in items])


def as_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) or float images -> float32 in [0, 1]."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


# ----------------------------------------------------------------------------- digits
def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out): ``fraction`` of every class held out, chosen by a seeded permutation."""
    rng = np.random.default_rng(seed)
    rest, held = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        cut = int(round(len(idx) * fraction))
        held.append(idx[:cut])
        rest.append(idx[cut:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(held))


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    with resources.files("trend_core").joinpath("_data/digits.npz").open("rb") as handle:
        data = np.load(handle)
        return data["images"].astype(np.float32) / 16.0, data["target"].astype(np.int64)


def load_digits(seed: int = 0) -> DatasetBundle:
    """scikit-learn's 1,797 handwritten digits (embedded): 20% test, then 90% train / 10% validation."""
    images, labels = _digits_arrays()
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    rest, test = stratified_split(labels, 0.2, seed)
    train, val = stratified_split(labels[rest], 0.1, seed + 1)
    train, val = rest[train], rest[val]

    def part(idx: np.ndarray) -> TensorDataset:
        return TensorDataset(x[idx].contiguous(), y[idx].contiguous())

    return DatasetBundle(_INFOS["digits"], part(train), part(val), part(test))


# ----------------------------------------------------------------------------- CIFAR
_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_CIFAR_FILES = {
    "cifar10": (
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
        ["test_batch"],
        "batches.meta",
        b"label_names",
        b"labels",
    ),
    "cifar100": (["train"], ["test"], "meta", b"fine_label_names", b"fine_labels"),
}
# The CIFAR python files are pickles of dicts of bytes, lists and numpy arrays: nothing else may be built.
_SAFE_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only; any other global (code) is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def read_cifar_batch(path: Path) -> dict:
    """Read one CIFAR python batch file without executing code from it."""
    try:
        with open(path, "rb") as handle:
            return _DataOnlyUnpickler(handle, encoding="bytes").load()
    except FileNotFoundError:
        raise TrendError(f"{path.name} is missing from {path.parent}; the CIFAR folder is incomplete.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise TrendError(f"{path} is not a readable CIFAR batch file ({exc}).") from None


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_cifar_split(folder: Path, files: list[str], label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for name in files:
        batch = read_cifar_batch(folder / name)
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        xs.append(torch.from_numpy(data.copy()))
        ys.append(torch.as_tensor(np.asarray(batch[label_key]), dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def load_cifar(
    name: str, root: str | os.PathLike | None = None, download: bool = False, val_size: int = 5000
) -> DatasetBundle:
    """CIFAR-10/100 from ``root`` (torchvision's on-disk layout); torchvision downloads it only when asked.

    The last ``val_size`` training images after a fixed shuffle are the validation set (45,000 / 5,000 as
    in the paper); test is the official test set. Files are read with a data-only unpickler.
    """
    info = get_info(name)
    base = data_root(root)
    folder = base / _CIFAR_FOLDERS[name]
    if download:
        import torchvision  # local: torchvision takes seconds to import; only the CIFAR files need it

        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        try:
            cls(str(base), train=True, download=True)
        except (OSError, RuntimeError) as exc:
            raise TrendError(f"Could not download {name} into {base} ({exc}).") from None
    if not folder.is_dir():
        raise TrendError(
            f"{name} was not found in {folder}; download it with `trend data download {name}` "
            f"or point TREND_DATA at the folder that holds {_CIFAR_FOLDERS[name]}/."
        )
    train_files, test_files, meta_file, names_key, label_key = _CIFAR_FILES[name]
    x_train, y_train = _read_cifar_split(folder, train_files, label_key)
    x_test, y_test = _read_cifar_split(folder, test_files, label_key)
    meta = read_cifar_batch(folder / meta_file) if (folder / meta_file).exists() else {}
    classes = tuple(_decode(c) for c in meta.get(names_key, info.class_names))
    val_size = min(val_size, len(y_train) // 10)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(y_train)))
    train_idx, val_idx = order[: len(order) - val_size], order[len(order) - val_size :]
    info = DatasetInfo(**{**info.__dict__, "class_names": classes})
    return DatasetBundle(
        info,
        _UInt8Images(x_train[train_idx], y_train[train_idx]),
        _UInt8Images(x_train[val_idx], y_train[val_idx]),
        _UInt8Images(x_test, y_test),
    )


class _UInt8Images(TensorDataset):
    """Images kept as uint8 (4x smaller); converted to [0, 1] floats on access."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        super().__init__(x, y)

    def __getitem__(self, index):
        x, y = super().__getitem__(index)
        return as_float_images(x), y


# ----------------------------------------------------------------------------- ImageNet
def load_imagenet(root: str | os.PathLike | None = None) -> DatasetBundle:
    """ImageNet as an ImageFolder tree (``root/imagenet/train`` and ``root/imagenet/val``, or ``root`` itself):
    2.5% of train (fixed, seeded) is validation, the official val set is the test set; resize 256, crop 224."""
    base = data_root(root)
    folder = base / "imagenet" if (base / "imagenet").is_dir() else base
    train_dir, test_dir = folder / "train", folder / "val"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise TrendError(
            f"ImageNet was not found: expected ImageFolder trees {train_dir} and {test_dir} "
            "(one sub-folder per class); point TREND_DATA at their parent."
        )
    import torchvision.datasets as tvd  # local: torchvision takes seconds to import; only ImageNet needs it
    import torchvision.transforms as T

    eval_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()])
    train_all = tvd.ImageFolder(str(train_dir), transform=train_tf)
    train_eval = tvd.ImageFolder(str(train_dir), transform=eval_tf)
    test = tvd.ImageFolder(str(test_dir), transform=eval_tf)
    labels = np.asarray(train_all.targets)
    rest, val = stratified_split(labels, 0.025, 0) if len(labels) >= 80 else (np.arange(len(labels)), np.arange(0))
    info = DatasetInfo(
        **{
            **_INFOS["imagenet"].__dict__,
            "num_classes": len(train_all.classes),
            "class_names": tuple(train_all.classes),
        }
    )
    return DatasetBundle(info, Subset(train_all, rest.tolist()), Subset(train_eval, val.tolist()), test)


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False) -> DatasetBundle:
    """Load a dataset by name; a missing one gets a TrendError saying where it was looked for."""
    get_info(name)
    if name == "digits":
        return load_digits()
    if name in _CIFAR_FOLDERS:
        return _cached_cifar(name, str(data_root(root)), download)
    return load_imagenet(root)


@lru_cache(maxsize=2)
def _cached_cifar(name: str, root: str, download: bool) -> DatasetBundle:
    return load_cifar(name, root, download)
