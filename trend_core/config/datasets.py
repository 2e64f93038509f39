"""What the engine knows about each dataset without loading it: shapes, classes, normalization and the
default eps (torch-free, so specs, pages and the CLI's help can use it).

Besides the built-in datasets, a user's own evaluation data imported with `trend data import NAME PATH` lives in
``<data root>/user/NAME`` (images.npz and info.json); its facts are read from that info.json here, so every page
and command knows it without a registration step.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trend_core.errors import TrendError

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

# mnist: 28x28 images, most pixels near 0 or 1. At eps = 0.15 PGD-20 fools the preset's full-precision models almost
# always (94-100%) and their transfer is the most spread (TM 0 to 0.9, a mean of 0.23 over 40 pairs); at 0.1 three
# pairs in four transfer at most 10%, from 0.2 on transfer to some targets saturates (README, "MNIST").
MNIST_EPS = 0.15

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
    "mnist": DatasetInfo(
        "mnist",
        10,
        (1, 28, 28),
        (0.1307,),  # the usual full-MNIST statistics (the embedded 10,000: 0.1311 and 0.3087)
        (0.3081,),
        MNIST_EPS,
        (0.02, 0.4),
        tuple(str(i) for i in range(10)),
        augment_padding=2,
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


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where CIFAR, ImageNet, the full MNIST and imported datasets are looked for: the argument, else
    $TREND_DATA, else ~/.cache/trend/data."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get("TREND_DATA")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trend" / "data"


BUILT_IN = tuple(_INFOS)
USER_DATASETS = "user"  # the data root's folder of imported datasets
USER_INFO = "info.json"
USER_IMAGES = "images.npz"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def check_user_dataset_name(name: str) -> str:
    """``name`` if it can name an imported dataset (lowercase letters, digits, - and _; not a built-in)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise TrendError(
            f"A dataset name is 1-40 lowercase letters, digits, '-' or '_', starting with a letter; got {name!r}."
        )
    if name in _INFOS:
        raise TrendError(f"{name!r} is a built-in dataset; choose another name for your own data.")
    return name


def user_dataset_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder an imported dataset ``name`` lives in."""
    return data_root(root) / USER_DATASETS / check_user_dataset_name(name)


def info_from_dict(data: dict) -> DatasetInfo:
    """A DatasetInfo from its JSON form (lists back to tuples)."""
    known = DatasetInfo.__dataclass_fields__
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
    fields["input_shape"] = tuple(int(v) for v in fields["input_shape"])
    return DatasetInfo(**fields)


def user_info(name: str, root: str | os.PathLike | None = None) -> DatasetInfo | None:
    """The facts of the imported dataset ``name``, or None when there is none by that name."""
    if not isinstance(name, str) or not _NAME.match(name) or name in _INFOS:
        return None
    path = data_root(root) / USER_DATASETS / name / USER_INFO
    try:
        return info_from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):
        raise TrendError(f"The imported dataset {name!r} has a damaged {path}; import it again.") from None


def user_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the datasets imported under the data root, sorted."""
    folder = data_root(root) / USER_DATASETS
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if _NAME.match(p.name) and (p / USER_INFO).is_file())


def get_info(name: str) -> DatasetInfo:
    """Describe a dataset by name: a built-in one, or one imported under the data root (no image loaded)."""
    if name in _INFOS:
        return _INFOS[name]
    info = user_info(name)
    if info is None:
        raise TrendError(f"Unknown dataset {name!r}; choose one of {', '.join(list_datasets())}.")
    return info


def list_datasets() -> list[str]:
    """The built-in datasets, then the imported ones."""
    return list(_INFOS) + user_datasets()
