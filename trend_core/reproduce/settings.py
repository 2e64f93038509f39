"""What one `trend reproduce` run does at each scale: the models (by role), images, eps and step counts.

``mini`` is a smoke test (three models, a few images and steps); ``quick`` runs the whole suite on digits in
minutes on a CPU (on MNIST in longer minutes: its images have 12 times the pixels); ``full`` uses the paper's step
counts and every test image. CIFAR follows the paper's attack settings (PGD 40 steps at 8/255, CW 100
iterations) at every scale; ``quick`` there limits the images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trend_core.attacks.pgd import step_size_for
from trend_core.config.datasets import get_info
from trend_core.config.presets import DEMO_EPOCHS, DEMO_ROLES
from trend_core.config.profiles import DEFAULT_PROFILE, check_profile
from trend_core.config.specs import DEFAULT_EPOCHS, ModelSpec
from trend_core.errors import TrendError
from trend_core.reproduce.choices import DATASETS, SCALES  # noqa: E402,F401  (torch-free, so `trend --help` stays fast)

# Roles: the paper's model names. Each role is one configuration of a ResNet18 base (or VGG).
ALL_ROLES = ("FP", "FP-s1", "FP-s2", "FP-adam", "VGG", "Q8", "Q4", "Q2", "Q1", "HT", "W2", "A2")
MINI_ROLES = DEMO_ROLES  # the quick demo zoo
_ROLE_CHANGES: dict[str, dict[str, Any]] = {
    "FP": {},
    "FP-s1": {"seed": 1},
    "FP-s2": {"seed": 2},
    "FP-adam": {"optimizer": "adam"},
    "Q8": {"input_quant": "Q8"},
    "Q4": {"input_quant": "Q4"},
    "Q2": {"input_quant": "Q2"},
    "Q1": {"input_quant": "Q1"},
    "HT": {"input_quant": "HT"},
    "W2": {"weight_bits": 2},
    "A2": {"act_bits": 2},
}
# The base architecture per dataset: digits and MNIST use their presets' narrow nets (the same checkpoints the
# dashboard's preset zoos hold); CIFAR uses the paper's ResNet18 and VGG11.
_BASES = {
    "digits": ("resnet18", 0.25, "vgg11_bn"),
    "mnist": ("resnet18", 0.125, "vgg11_bn"),
    "cifar10": ("resnet18", 1.0, "vgg11"),
    "cifar100": ("resnet18", 1.0, "vgg11"),
}


def role_names(dataset: str, roles=ALL_ROLES, width: float | None = None, epochs: int | None = None) -> dict[str, str]:
    """Canonical model names of ``roles`` on ``dataset`` (optionally another width or epoch count)."""
    arch, base_width, vgg = _BASES[dataset]
    width = base_width if width is None else width
    epochs = DEFAULT_EPOCHS[dataset] if epochs is None else epochs
    base = ModelSpec(dataset=dataset, arch=arch, width=width, epochs=epochs)
    names = {}
    for role in roles:
        spec = base.replace(arch=vgg) if role == "VGG" else base.replace(**_ROLE_CHANGES[role])
        names[role] = spec.name
    return names


@dataclass(frozen=True)
class ReproSettings:
    """Every knob of one reproduction; part of each stage's cache key and printed in the report."""

    dataset: str
    scale: str
    profile: str = DEFAULT_PROFILE
    models: dict = field(default_factory=dict)  # role -> canonical model name
    limit: int | None = 200  # test images (None: all)
    eps: float = 0.1  # the transfer runs' PGD eps (the dataset's default)
    pgd_steps: int = 20
    pgd_step_size: float = 0.01
    cw_steps: int = 50
    cw_search_steps: int = 5
    deepfool_steps: int = 50
    ensemble_eps: tuple = (0.02, 0.05, 0.1, 0.15)
    ensemble_steps: int = 20
    trend_eps: float = 0.1  # the eps of the TREND robustness comparison and the audit
    fit_eps: tuple = (0.02, 0.113333, 0.206667, 0.3)
    sweep_eps: tuple = ()
    fit_steps: int = 20
    boundary_resolution: int = 31
    agreement_images: int = 32
    audit_level: str = "quick"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise TrendError(f"Unknown scale {self.scale!r}; choose one of {', '.join(SCALES)}.")
        if self.dataset not in DATASETS:
            raise TrendError(f"trend reproduce runs on {', '.join(DATASETS)}, not {self.dataset!r}.")
        check_profile(self.profile)
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 2
        ):
            raise TrendError(f"The image limit must be a whole number >= 2, got {self.limit!r}.")
        if not self.models or "FP" not in self.models:
            raise TrendError("A reproduction needs at least the full-precision model (role FP).")

    def roles(self, *wanted: str) -> list[str]:
        """The ``wanted`` roles this run has, in the order given."""
        return [r for r in wanted if r in self.models]

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes) -> ReproSettings:
        return dataclasses.replace(self, **changes)


SMALL_DATASETS = ("digits", "mnist")  # CPU-sized: the scale sets the images and the attacks' steps
ENSEMBLE_EPS_FACTORS = (0.2, 0.5, 1.0, 1.5)
# mini trains FP, Q2 and Q1 briefly: digits' quick demo zoo (4 epochs, nothing to train after it), MNIST's 2 epochs
MINI_EPOCHS = {"digits": DEMO_EPOCHS, "mnist": 2}
AUDIT_LEVEL_OF_SCALE = {"mini": "smoke", "quick": "quick", "full": "thorough"}  # mini: a pipeline check, no verdict


def _grid(low: float, high: float, points: int) -> tuple:
    return tuple(float(v) for v in np.round(np.linspace(low, high, points), 6))


def settings_for(
    dataset: str = "digits", scale: str = "quick", profile: str = DEFAULT_PROFILE, **overrides
) -> ReproSettings:
    """The settings of ``scale`` on ``dataset`` under ``profile``; ``overrides`` replace any field
    (``width`` / ``epochs`` change the models' architecture width and training length)."""
    if dataset not in DATASETS:
        raise TrendError(f"trend reproduce runs on {', '.join(DATASETS)}, not {dataset!r}.")
    if scale not in SCALES:
        raise TrendError(f"Unknown scale {scale!r}; choose one of {', '.join(SCALES)}.")
    profile = check_profile(profile)
    info = get_info(dataset)
    low, high = info.eps_range
    width, epochs = overrides.pop("width", None), overrides.pop("epochs", None)
    if scale == "mini" and epochs is None:
        epochs = MINI_EPOCHS.get(dataset, epochs)
    roles = MINI_ROLES if scale == "mini" else ALL_ROLES
    models = {
        role: ModelSpec.parse(name).replace(profile=profile).name
        for role, name in role_names(dataset, roles, width, epochs).items()
    }
    base: dict = {
        "dataset": dataset,
        "scale": scale,
        "profile": profile,
        "models": models,
        "eps": info.default_eps,
        "fit_eps": _grid(low, high, 4),
        "sweep_eps": _grid(low, high, 20),
        "audit_level": AUDIT_LEVEL_OF_SCALE[scale],
    }
    if dataset in SMALL_DATASETS:
        eps = info.default_eps  # ensembles at 0.2 to 1.5 times it: digits' 0.02, 0.05, 0.1, 0.15
        base.update(ensemble_eps=tuple(round(f * eps, 6) for f in ENSEMBLE_EPS_FACTORS), trend_eps=eps)
        if scale == "mini":
            base.update(
                limit=40,
                pgd_steps=5,
                cw_steps=10,
                cw_search_steps=2,
                deepfool_steps=10,
                ensemble_steps=5,
                ensemble_eps=(round(0.5 * eps, 6), eps),
                fit_steps=5,
                sweep_eps=_grid(low, high, 6),
                boundary_resolution=11,
                agreement_images=8,
            )
        elif scale == "full":
            base.update(
                limit=None,
                pgd_steps=40,
                cw_steps=100,
                cw_search_steps=9,
                ensemble_steps=40,
                fit_steps=40,
                boundary_resolution=41,
            )
    else:  # CIFAR: the paper's attack settings at every scale; the scale sets how many images
        base.update(
            pgd_steps=40,
            cw_steps=100,
            cw_search_steps=9,
            ensemble_steps=40,
            fit_steps=40,
            ensemble_eps=(0.005, 0.01, 0.02, 0.03),
            trend_eps=0.01,
            boundary_resolution=41,
            limit={"mini": 40, "quick": 1000, "full": None}[scale],
        )
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(ReproSettings)})
    if unknown:
        raise TrendError(f"Unknown reproduce setting {unknown[0]!r}.")
    base.update(overrides)
    if dataset == "mnist" and "pgd_step_size" not in overrides:  # steps of 0.01 may not travel MNIST's larger eps
        base["pgd_step_size"] = step_size_for(base["eps"], base.get("pgd_steps", ReproSettings.pgd_steps))
    return ReproSettings(**base)
