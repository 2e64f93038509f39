"""The scales and datasets `trend reproduce` offers: plain constants, importable without torch (for `--help`)."""

SCALES = ("mini", "quick", "full")
DATASETS = ("digits", "mnist", "cifar10", "cifar100")
