"""ModelSpec: the identity of a model, its canonical name and its stable content key.

Canonical name (fields equal to their defaults are left out, parsing fills them back in):

    {dataset}/{arch}[-w{width}]/{input}[-W{bits}][-A{bits}]/{optimizer}/s{seed}[/e{epochs}][/lr{lr}][/pretrained][/authors]

for example ``digits/resnet18-w0.25/Q2/sgd/s0`` or ``cifar10/vgg11/FP-W2/adam/s3/e400``; the last part names the
method profile (``trend_core.config.profiles``) when it is not the default ``paper``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass

from trend_core.config.architectures import list_archs, small_map_vgg
from trend_core.config.datasets import get_info, user_datasets
from trend_core.config.profiles import DEFAULT_PROFILE, PROFILES, check_profile
from trend_core.errors import TrendError

DATASETS = ("digits", "mnist", "cifar10", "cifar100", "imagenet")
OPTIMIZERS = ("sgd", "adam")
INPUT_QUANTS = ("FP",) + tuple(f"Q{n}" for n in range(1, 9)) + ("HT", "HT-FS")
FULL_PRECISION_BITS = 32
DEFAULT_LR = 0.01
# Default epochs per dataset: the paper's 400 / 250 for CIFAR / ImageNet; digits trains in seconds.
DEFAULT_EPOCHS = {"digits": 20, "mnist": 8, "cifar10": 400, "cifar100": 400, "imagenet": 250}
# Networks whose function changed with issue #9's fixes (the VGG head, DoReFa's weight scale and activation
# placement, 3-channel HT) carry this revision in their content key, so a checkpoint trained before cannot be
# loaded into the new network; every other spec keeps its key (and its checkpoints).
ARCH_REVISION = 2
# Digits VGGs changed once more (no head dropout below 32x32 images, issue #9's follow-up): their key carries this
# revision, so a digits VGG trained with the slow-converging dropout head is retrained rather than reused.
SMALL_VGG_REVISION = 3
# VGGs changed again with issue #19: the BatchNorm-free VGGs on images below 32x32 got their own pooling and init
# (they stayed at chance on digits), and activation quantization moved to the authors' places (after each max-pool,
# none on the last linear's input). Those specs carry this revision; CIFAR VGGs without activation bits and every
# other network keep their keys.
VGG_REVISION = 4
MAX_SEED = 2**32 - 1  # what numpy and torch generators take
MAX_EPOCHS = 10_000
# A ResNet18's first stage keeps 8 channels. Narrower (1/16: 4 channels) deadlocks PyTorch 2.14's CPU oneDNN
# 1x1-convolution backward on two threads: 10 of 10 trainings of a 1/16 CIFAR ResNet18 hung, 0 of 10 at 1/8.
MIN_WIDTH = 1 / 8


def _short(value: object) -> str:
    """repr of ``value`` cut to 60 characters, for messages about absurd input."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fmt_number(value: float) -> str:
    """Shortest text that parses back to the same float (0.25 -> '0.25', 1.0 -> '1')."""
    text = repr(float(value))
    return text.removesuffix(".0")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a trained model; two equal specs name the same checkpoint."""

    dataset: str = "digits"
    arch: str = "resnet18"
    width: float = 1.0
    optimizer: str = "sgd"
    seed: int = 0
    input_quant: str = "FP"
    weight_bits: int = FULL_PRECISION_BITS
    act_bits: int = FULL_PRECISION_BITS
    epochs: int | None = None
    lr: float = DEFAULT_LR
    pretrained: bool = False
    profile: str = DEFAULT_PROFILE

    def __post_init__(self) -> None:
        if self.epochs is None:
            object.__setattr__(self, "epochs", DEFAULT_EPOCHS.get(self.dataset, 30))
        object.__setattr__(self, "width", float(self.width))
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "profile", check_profile(self.profile))
        self.validate()

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        """Refuse every invalid value with one sentence naming the valid choices."""
        if self.dataset not in DATASETS:
            if self.dataset in user_datasets():
                raise TrendError(
                    f"{self.dataset} is data you imported (evaluation images only), so its networks are imported, "
                    f"not trained: `trend zoo import user/{self.dataset}/<name> FILE.pt2 --expects pixels`."
                )
            raise TrendError(f"Unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}.")
        archs = list_archs(self.dataset)
        if self.arch not in archs:
            raise TrendError(
                f"Unknown architecture {self.arch!r} for {self.dataset}; choose one of {', '.join(archs)}."
            )
        if not (MIN_WIDTH <= self.width <= 4):
            raise TrendError(f"Width multiplier must be in [{MIN_WIDTH}, 4], got {self.width}.")
        if self.optimizer not in OPTIMIZERS:
            raise TrendError(f"Unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise TrendError(f"Seed must be a non-negative whole number up to {MAX_SEED}, got {_short(self.seed)}.")
        if self.input_quant not in INPUT_QUANTS:
            raise TrendError(
                f"Unknown input quantization {self.input_quant!r}; choose one of {', '.join(INPUT_QUANTS)}."
            )
        for label, bits in (("Weight", self.weight_bits), ("Activation", self.act_bits)):
            if (
                not isinstance(bits, int)
                or isinstance(bits, bool)
                or not (bits == FULL_PRECISION_BITS or 1 <= bits <= 16)
            ):
                raise TrendError(f"{label} bits must be 1..16 or 32 (full precision), got {bits!r}.")
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or not 1 <= self.epochs <= MAX_EPOCHS:
            raise TrendError(f"Epochs must be a whole number in 1..{MAX_EPOCHS}, got {_short(self.epochs)}.")
        if not (0 < self.lr < 10):
            raise TrendError(f"Learning rate must be in (0, 10), got {self.lr}.")
        if self.pretrained and self.dataset != "imagenet":
            raise TrendError("Pretrained weights exist only for ImageNet (torchvision) models.")

    # ----------------------------------------------------------------- naming
    @property
    def name(self) -> str:
        """Readable canonical name; ``ModelSpec.parse(spec.name) == spec``."""
        arch = self.arch if self.width == 1.0 else f"{self.arch}-w{_fmt_number(self.width)}"
        quant = self.input_quant
        if self.weight_bits != FULL_PRECISION_BITS:
            quant += f"-W{self.weight_bits}"
        if self.act_bits != FULL_PRECISION_BITS:
            quant += f"-A{self.act_bits}"
        parts = [self.dataset, arch, quant, self.optimizer, f"s{self.seed}"]
        if self.epochs != DEFAULT_EPOCHS.get(self.dataset):
            parts.append(f"e{self.epochs}")
        if self.lr != DEFAULT_LR:
            parts.append(f"lr{_fmt_number(self.lr)}")
        if self.pretrained:
            parts.append("pretrained")
        if self.profile != DEFAULT_PROFILE:
            parts.append(self.profile)
        return "/".join(parts)

    @property
    def short_name(self) -> str:
        """The paper's style of label (FP, Q2, W1, A2, FP-V-A ...), for charts; not unique across seeds."""
        label = self.input_quant
        if self.weight_bits != FULL_PRECISION_BITS:
            label = f"W{self.weight_bits}" if label == "FP" else f"{label}-W{self.weight_bits}"
        if self.act_bits != FULL_PRECISION_BITS:
            label = f"A{self.act_bits}" if label == "FP" else f"{label}-A{self.act_bits}"
        if not self.arch.startswith("resnet18"):
            label += "-" + self.arch.upper().replace("RESNET", "RN").replace("_", "")
        if self.optimizer == "adam":
            label += "-adam"
        return f"{label}-s{self.seed}"

    @property
    def key(self) -> str:
        """Stable content key (16 hex digits) addressing checkpoints and cached results."""
        fields = dataclasses.asdict(self)
        if self.profile == DEFAULT_PROFILE:  # the default profile keeps the keys specs had before it existed
            del fields["profile"]
        revision = self.revision
        if revision is not None:
            fields["revision"] = revision
        payload = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def revision(self) -> int | None:
        """The last fix that changed this spec's network (its key carries it, so no checkpoint trained before the
        fix is loaded into the new network); None for networks no fix changed, whose keys stay as they were."""
        vgg = self.arch.startswith("vgg")
        act_bits = self.act_bits != FULL_PRECISION_BITS
        if vgg and (act_bits or small_map_vgg(self.arch, get_info(self.dataset).image_size)):
            return VGG_REVISION
        if not self.revised:
            return None
        return SMALL_VGG_REVISION if vgg and self.dataset == "digits" else ARCH_REVISION

    @property
    def revised(self) -> bool:
        """Whether issue #9's fixes changed this spec's network (so its key carries ARCH_REVISION)."""
        quantized = self.weight_bits != FULL_PRECISION_BITS or self.act_bits != FULL_PRECISION_BITS
        cifar_vgg = self.arch.startswith("vgg")
        colour_ht = self.input_quant == "HT" and self.dataset != "digits"
        return quantized or cifar_vgg or colour_ht

    def replace(self, **changes) -> ModelSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise TrendError(f"Unknown model spec fields: {', '.join(sorted(unknown))}.")
        return cls(**data)

    @classmethod
    def parse(cls, name: str) -> ModelSpec:
        """Parse a canonical name (see the module docstring) back into a spec."""
        if not isinstance(name, str) or not name.strip():
            raise TrendError("A model name is empty; expected e.g. 'digits/resnet18-w0.25/Q2/sgd/s0'.")
        if len(name) > 200 or re.search(r"\d{19}", name):
            raise TrendError(f"Model name {_short(name)} is too long or holds a number too large to be one.")
        parts = name.strip().strip("/").split("/")
        example = "'digits/resnet18-w0.25/Q2/sgd/s0'"
        if len(parts) < 5:
            raise TrendError(
                f"Model name {name!r} has too few parts; expected dataset/arch/input/optimizer/seed like {example}."
            )
        dataset, arch_part, quant_part, optimizer, seed_part, *rest = parts
        width = 1.0
        match = re.fullmatch(r"(.+)-w([0-9.]+)", arch_part)
        if match:
            arch_part, width_text = match.groups()
            try:
                width = float(width_text)
            except ValueError:
                raise TrendError(f"Bad width {width_text!r} in model name {name!r}.") from None
        quant_match = re.fullmatch(r"(FP|Q\d+|HT-FS|HT)(?:-W(\d+))?(?:-A(\d+))?", quant_part)
        if not quant_match:
            raise TrendError(
                f"Bad quantization part {quant_part!r} in {name!r}; expected e.g. FP, Q2, HT, HT-FS, FP-W2, Q4-A2."
            )
        input_quant, weight_bits, act_bits = quant_match.groups()
        seed_match = re.fullmatch(r"s(\d+)", seed_part)
        if not seed_match:
            raise TrendError(f"Bad seed part {seed_part!r} in {name!r}; expected s0, s1, ...")
        kwargs: dict = dict(
            dataset=dataset,
            arch=arch_part,
            width=width,
            optimizer=optimizer,
            seed=int(seed_match.group(1)),
            input_quant=input_quant,
            weight_bits=int(weight_bits) if weight_bits else FULL_PRECISION_BITS,
            act_bits=int(act_bits) if act_bits else FULL_PRECISION_BITS,
        )
        for extra in rest:
            if re.fullmatch(r"e\d+", extra):
                kwargs["epochs"] = int(extra[1:])
            elif extra.startswith("lr"):
                try:
                    kwargs["lr"] = float(extra[2:])
                except ValueError:
                    raise TrendError(f"Bad learning rate {extra!r} in {name!r}.") from None
            elif extra == "pretrained":
                kwargs["pretrained"] = True
            elif extra in PROFILES:
                kwargs["profile"] = extra
            else:
                raise TrendError(
                    f"Unknown part {extra!r} in {name!r}; expected e<epochs>, lr<rate>, pretrained "
                    f"or a profile ({', '.join(p for p in PROFILES if p != DEFAULT_PROFILE)})."
                )
        return cls(**kwargs)


def parse_spec(name_or_spec: str | ModelSpec) -> ModelSpec:
    """Accept either a spec or its canonical name."""
    return name_or_spec if isinstance(name_or_spec, ModelSpec) else ModelSpec.parse(name_or_spec)
