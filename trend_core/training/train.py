"""Training loop: SGD (momentum 0.9, wd 5e-4) or Adam, lr / 10 at 60% and 80% of the epochs, best-validation
weights kept, test accuracy reported. Deterministic on the CPU for a given seed; reports progress through a
callback and stops early when a cancel callback says so. Training that ends at chance accuracy is a failure
(``TrainingFailed``), never a model.
"""

from __future__ import annotations

import copy
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from trend_core.config.datasets import DatasetInfo
from trend_core.config.profiles import get_profile
from trend_core.config.specs import DEFAULT_LR, ModelSpec
from trend_core.data.datasets import DatasetBundle, as_float_images, load_dataset
from trend_core.errors import TrendError
from trend_core.nn.build import TrendModel, build_model
from trend_core.runtime.devices import resolve_device
from trend_core.training.threads import cpu_threads, training_threads

EpochCallback = Callable[["EpochReport"], None]  # training reports whole epochs (see EpochReport)


class TrainingCancelled(Exception):
    """Raised when the cancel callback returns True; nothing is saved."""


class TrainingFailed(TrendError):
    """Training ended at chance accuracy: the model learned nothing, so it is not handed out (nor saved).

    The message is one sentence naming the model, its best validation accuracy and the chance level, and the
    names of ``others`` that ended at chance in the same run."""

    def __init__(self, name: str, val_acc: float, num_classes: int, others: tuple[str, ...] = ()):
        self.name, self.val_acc, self.num_classes, self.others = name, val_acc, num_classes, others
        also = f" (nor were {len(others)} more at chance: {', '.join(others)})" if others else ""
        super().__init__(
            f"Training {name} failed: its best validation accuracy, {val_acc:.1%}, is at the chance level of "
            f"{num_classes} classes ({1 / num_classes:.0%}), so the model learned nothing and was not kept{also}; "
            "try another learning rate or optimizer, or more epochs."
        )

    def __reduce__(self):  # pickled (to or from a worker process) with its fields, not just its message
        return TrainingFailed, (self.name, self.val_acc, self.num_classes, self.others)

    def with_others(self, failures: list[TrainingFailed]) -> TrainingFailed:
        """This failure, naming the models of ``failures`` too (one message for a run where several failed)."""
        names = tuple(f.name for f in failures if f is not self)
        return TrainingFailed(self.name, self.val_acc, self.num_classes, names) if names else self


# A model whose best validation accuracy stays below chance (1 / classes) plus this margin learned nothing: on the
# digits' 143 validation images that is 22 right answers where guessing gets about 14. Validation splits under
# CHANCE_MIN_IMAGES images (test fakes) say too little to call it, so they are not judged.
CHANCE_MARGIN = 0.05
CHANCE_MIN_IMAGES = 100


def check_learned(spec: ModelSpec, best_val_acc: float, num_classes: int, val_images: int) -> None:
    """Raise TrainingFailed when ``best_val_acc`` is within CHANCE_MARGIN of chance."""
    if val_images >= CHANCE_MIN_IMAGES and best_val_acc < 1 / num_classes + CHANCE_MARGIN:
        raise TrainingFailed(spec.name, best_val_acc, num_classes)


@dataclass
class EpochReport:
    epoch: int
    epochs: int
    loss: float
    val_acc: float
    best_val_acc: float
    seconds: float


def epoch_logger(name: str, stream: TextIO | None = None) -> EpochCallback:
    """A progress function that writes one line per epoch of ``name``'s training to ``stream`` (default stderr):
    what ``Zoo.get_or_train`` shows a notebook or script by default, so a model that trains is never silent."""

    def log(report: EpochReport) -> None:
        out = stream if stream is not None else sys.stderr
        out.write(
            f"{name}: epoch {report.epoch}/{report.epochs}, loss {report.loss:.3f}, "
            f"val acc {report.val_acc:.1%} ({report.seconds:.1f} s)\n"
        )
        out.flush()

    return log


@dataclass
class TrainResult:
    model: TrendModel
    val_acc: float
    test_acc: float
    train_seconds: float
    history: list[EpochReport] = field(default_factory=list)


def trained_metadata(result: TrainResult, device: str) -> dict:
    """What the zoo stores about a model it trained: accuracies, seconds, device and the per-epoch history."""
    return {
        "source": "trained",
        "val_acc": result.val_acc,
        "test_acc": result.test_acc,
        "train_seconds": round(result.train_seconds, 3),
        "device": str(device),
        "history": [{"epoch": h.epoch, "loss": h.loss, "val_acc": h.val_acc} for h in result.history],
    }


_INIT_LOCK = threading.Lock()  # seeding torch's global generator and drawing the initial weights, as one step


def default_batch_size(info: DatasetInfo) -> int:
    return 64 if info.name in ("digits", "mnist") else (256 if info.name != "imagenet" else 128)


def augment_batch(x: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop after zero padding (a shift of up to ``padding`` pixels) and optional horizontal flip,
    done on the whole batch at once."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)
    batch_idx = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[batch_idx, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)
    if not flip:
        return out
    flips = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flips.view(n, 1, 1, 1), out.flip(3), out)


def iterate_batches(
    dataset: Dataset,
    batch_size: int,
    generator: torch.Generator | None = None,
    shuffle: bool = False,
    drop_last: bool = False,
):
    """(x in [0, 1], y) batches; in-memory tensor datasets are sliced directly (no per-item collation)."""
    if isinstance(dataset, TensorDataset):
        x_all, y_all = dataset.tensors
        n = len(y_all)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for i in range(0, stop, batch_size):
            idx = order[i : i + batch_size]
            yield as_float_images(x_all[idx]), y_all[idx]
        return
    yield from DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        drop_last=drop_last,
        num_workers=min(8, (os.cpu_count() or 1)) if shuffle else 0,
    )


@torch.inference_mode()
def accuracy(model: nn.Module, dataset: Dataset, device: torch.device | str = "cpu", batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` in eval mode (fraction in [0, 1])."""
    if len(dataset) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = 0
    for x, y in iterate_batches(dataset, batch_size):
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    model.train(was_training)
    return correct / len(dataset)


def learning_rate(spec: ModelSpec) -> float:
    """The initial learning rate: the spec's, except that under the ``authors`` profile Adam with the default
    rate uses the authors' 1e-3 (1e-4 for VGG11-BN)."""
    profile = get_profile(spec.profile)
    if spec.optimizer == "adam" and spec.lr == DEFAULT_LR and profile.adam_lr is not None:
        if spec.arch == "vgg11_bn" and profile.adam_lr_vgg_bn is not None:
            return profile.adam_lr_vgg_bn
        return profile.adam_lr
    return spec.lr


def training_batch_size(spec: ModelSpec, info: DatasetInfo) -> int:
    """The minibatch size: the profile's (the authors' 512) or the dataset's default."""
    return get_profile(spec.profile).train_batch or default_batch_size(info)


def make_optimizer(spec: ModelSpec, params) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=learning_rate(spec), momentum=0.9, weight_decay=5e-4)
    return torch.optim.Adam(params, lr=learning_rate(spec))


def train_model(
    spec: ModelSpec,
    data: DatasetBundle | None = None,
    device: str = "auto",
    progress: EpochCallback | None = None,
    cancel: Callable[[], bool] | None = None,
    batch_size: int | None = None,
    amp: bool = True,
) -> TrainResult:
    """Train ``spec`` from its seed; returns the best-validation model (on the CPU) and its accuracies, or raises
    TrainingFailed when that model is at chance accuracy (``check_learned``).

    On CUDA the forward pass runs under bf16 autocast unless ``amp=False`` (the CPU path is plain fp32).
    """
    if spec.pretrained:
        raise TrendError("Pretrained torchvision models are loaded, not trained; use the zoo to fetch them.")
    data = data or load_dataset(spec.dataset)
    dev = resolve_device(device)
    with cpu_threads(training_threads(data.info, dev)):
        return train_loop(spec, data, dev, progress, cancel, batch_size, amp)


def train_loop(
    spec: ModelSpec,
    data: DatasetBundle,
    dev: torch.device,
    progress: EpochCallback | None,
    cancel: Callable[[], bool] | None,
    batch_size: int | None,
    amp: bool,
) -> TrainResult:
    """The training loop of ``train_model``, with the CPU threads as the caller set them (``train_many`` trains
    several at once, each on one thread)."""
    with _INIT_LOCK:  # another thread training at the same time must not draw from the seeded generator between
        torch.manual_seed(spec.seed)
        model = build_model(spec, data.info).to(dev)
    optimizer = make_optimizer(spec, model.parameters())
    epochs = spec.epochs
    milestones = sorted({int(round(0.6 * epochs)), int(round(0.8 * epochs))} - {0})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    generator = torch.Generator().manual_seed(spec.seed)
    batch = batch_size or training_batch_size(spec, data.info)
    use_amp = amp and dev.type == "cuda"
    best_acc, best_state = -1.0, copy.deepcopy(model.state_dict())
    history: list[EpochReport] = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for x, y in iterate_batches(data.train, batch, generator, shuffle=True, drop_last=len(data.train) > 256):
            if cancel is not None and cancel():
                raise TrainingCancelled(f"Training of {spec.name} was cancelled.")
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if data.info.augment_padding:
                x = augment_batch(x, generator, data.info.augment_padding, data.info.augment_flip)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        scheduler.step()
        val_acc = accuracy(model, data.val, dev)
        if val_acc > best_acc or best_acc < 0:
            best_acc = val_acc
            best_state = copy.deepcopy(model.state_dict())
        report = EpochReport(epoch, epochs, total / max(count, 1), val_acc, best_acc, time.perf_counter() - epoch_start)
        history.append(report)
        if progress is not None:
            progress(report)
    check_learned(spec, best_acc, data.info.num_classes, len(data.val))
    model.load_state_dict(best_state)
    model.zero_grad(set_to_none=True)  # hand out a model like a loaded one: no leftover parameter gradients
    model.eval()
    test_acc = accuracy(model, data.test, dev)
    return TrainResult(model.cpu(), best_acc, test_acc, time.perf_counter() - start, history)
