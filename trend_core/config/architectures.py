"""Which architectures exist, by name and dataset family (torch-free, so a spec can be checked without building
anything). ``trend_core.nn`` registers a builder for each name; ``register_arch`` there adds a user's own."""

from __future__ import annotations

SMALL_IMAGE_DATASETS = ("digits", "mnist", "cifar10", "cifar100")
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
PLAIN_VGGS = ("vgg11", "vgg19")  # BatchNorm-free; each has a _bn twin with BatchNorm after every conv
TORCHVISION_ARCHS = (
    "tv_resnet18",
    "tv_resnet34",
    "tv_resnet101",
    "tv_vgg11",
    "tv_vgg19",
    "tv_densenet121",
    "tv_wide_resnet50_2",
)
AUTHORS_IMAGE_SIZE = 32  # the authors' VGGs are built for CIFAR's 32x32 images

_FAMILIES: dict[str, tuple[str, ...]] = {
    **{name: SMALL_IMAGE_DATASETS for name in RESNETS},
    **{name + suffix: SMALL_IMAGE_DATASETS for name in PLAIN_VGGS for suffix in ("", "_bn")},
    "smallcnn": SMALL_IMAGE_DATASETS,
    **{name: ("imagenet",) for name in TORCHVISION_ARCHS},
}


def add_arch_name(name: str, datasets: tuple[str, ...] = SMALL_IMAGE_DATASETS) -> None:
    """Declare ``name`` usable on ``datasets`` (called by ``trend_core.nn.registry.register_arch``)."""
    _FAMILIES[name] = tuple(datasets)


def list_archs(dataset: str | None = None) -> list[str]:
    """Architecture names, those usable on ``dataset`` if given."""
    return sorted(n for n, ds in _FAMILIES.items() if dataset is None or dataset in ds)


def small_map_vgg(arch: str, image_size: int) -> bool:
    """Whether ``arch`` on ``image_size``-pixel images is a BatchNorm-free VGG built with the small-map rules
    (see ``trend_core.nn.architectures.CifarVGG``) instead of the authors' layout and initialization."""
    return arch in PLAIN_VGGS and image_size < AUTHORS_IMAGE_SIZE
