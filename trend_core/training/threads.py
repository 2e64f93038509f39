"""How many CPU threads training (and attacking) uses: one for small images, whose ops are too small to share
between threads, else PyTorch's own setting; and the block that runs under such a setting."""

from __future__ import annotations

import contextlib
import threading
from typing import ContextManager, Iterator

import torch

from trend_core.config.datasets import DatasetInfo, get_info
from trend_core.errors import TrendError

# Images up to this size (digits' 8x8, MNIST's 28x28; not CIFAR's 32x32) train on one CPU thread. MNIST measured
# (an eighth-width ResNet18, one epoch of the embedded 7,200 images, load 5-7 on 2 cores): 15 s on one thread,
# 132 s on two.
SMALL_IMAGE_PIXELS = 28 * 28
_THREADS_LOCK = threading.RLock()


def training_threads(info: DatasetInfo, device: torch.device) -> int | None:
    """The CPU threads to train (and attack) with: one for small images, else None (PyTorch's setting).

    A digits batch is a few hundred kB of activations, so each op takes microseconds and a second thread costs
    more in hand-offs than it gains; on a loaded 2-core machine the two threads wait on each other for a whole
    time slice at every op. Measured (one process, load ~18 on 2 cores): 20 s for two epochs of the digits
    ResNet18 on one thread, 445 s on two; PGD-20 on 100 digits 5.7 s against 45 s; see README "Timings".
    """
    if device.type != "cpu":
        return None
    return 1 if info.image_size * info.image_size <= SMALL_IMAGE_PIXELS else None


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` intra-op CPU threads (None: unchanged), restoring the setting after; the
    setting is process-wide, so blocks that change it run one at a time."""
    if count is None or count == torch.get_num_threads():
        yield
        return
    with _THREADS_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def dataset_threads(dataset: str | None, device: str | None) -> ContextManager[None]:
    """The thread setting for heavy work on ``dataset``'s images on ``device`` (a job's device lane, e.g. "cpu"):
    ``training_threads`` on the CPU; unchanged on a GPU, or when the dataset is not named or not known."""
    if device != "cpu" or not dataset:
        return contextlib.nullcontext()
    try:
        info = get_info(dataset)
    except TrendError:
        return contextlib.nullcontext()
    return cpu_threads(training_threads(info, torch.device("cpu")))
