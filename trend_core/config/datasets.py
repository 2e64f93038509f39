"""What the engine knows about each dataset without loading it: shapes, classes, normalization and the
default eps (torch-free, so specs, pages and the CLI's help can use it)."""

from __future__ import annotations

from dataclasses import dataclass, field

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


def get_info(name: str) -> DatasetInfo:
    """Describe a dataset by name (no disk access)."""
    try:
        return _INFOS[name]
    except KeyError:
        raise TrendError(f"Unknown dataset {name!r}; choose one of {', '.join(_INFOS)}.") from None


def list_datasets() -> list[str]:
    return list(_INFOS)
