"""The scales and datasets `trend reproduce` offers: plain constants, importable without torch (for `--help`)."""

SCALES = ("mini", "quick", "full")
DATASETS = ("digits", "cifar10", "cifar100")
