"""Training benchmark.

    python bench/train.py                 # wall time of the whole digits preset on this machine (target < 90 s)
    python bench/train.py --demo          # the quick demo zoo (FP, Q2, Q1 for 4 epochs) instead of the preset
    python bench/train.py --threads       # one digits model, 2 epochs: one CPU thread against PyTorch's default,
                                          # alternated in one run (the ratio holds on a loaded machine)
    python bench/train.py --cifar-epoch   # + seconds per epoch of a full-width CIFAR ResNet18 (45,000 images)

The preset is trained into a fresh temporary zoo so nothing is served from a cache. The CIFAR epoch uses
random images of CIFAR's shape (the timing does not depend on pixel values), so it runs where CIFAR is absent.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trend_core.config.datasets import get_info
from trend_core.config.presets import QUICK_DEMO  # noqa: E402
from trend_core.config.specs import ModelSpec  # noqa: E402
from trend_core.data.datasets import DatasetBundle, load_dataset  # noqa: E402
from trend_core.models.zoo import Zoo, preset_specs  # noqa: E402
from trend_core.runtime.devices import resolve_device  # noqa: E402
from trend_core.training.many import side_by_side  # noqa: E402
from trend_core.training.train import train_model  # noqa: E402


def load() -> str:
    """The machine's load average, printed next to every figure (timings on a busy machine are slower)."""
    try:
        return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load unknown"


def bench_threads(device: str, repeats: int = 2) -> None:
    """Two epochs of the digits ResNet18 with one thread and with PyTorch's default, alternated."""
    from trend_core.training.threads import training_threads
    from trend_core.training.train import train_loop

    default = torch.get_num_threads()
    spec = ModelSpec.parse("digits/resnet18-w0.25/FP/sgd/s0/e2")
    data = load_dataset("digits")
    dev = torch.device(device)
    print(f"training uses {training_threads(data.info, dev) or default} thread(s) for digits on {device}")
    times: dict[int, list[float]] = {1: [], default: []}
    for _ in range(repeats):
        for threads, samples in times.items():
            torch.set_num_threads(threads)
            start = time.perf_counter()
            result = train_loop(
                spec, data, dev, progress=None, cancel=None, batch_size=None, amp=True
            )  # threads as set here
            samples.append(time.perf_counter() - start)
            print(f"  {threads} thread(s): {samples[-1]:.1f} s, test acc {result.test_acc:.3f} ({load()})")
    torch.set_num_threads(default)
    best = {t: min(v) for t, v in times.items()}
    print(
        f"2 digits epochs: {best[1]:.1f} s on 1 thread, {best[default]:.1f} s on {default}: "
        f"{best[default] / best[1]:.2f}x ({load()})"
    )


def bench_preset(device: str, names: tuple[str, ...] | None = None) -> float:
    """Wall time of training the preset (or ``names``) into a fresh zoo as the CLI and the page do
    (``Zoo.train_many``: small-image models side by side, one per core)."""
    specs = [ModelSpec.parse(n) for n in names] if names else preset_specs("digits")
    what = "quick demo zoo (3 models)" if names else "digits preset (12 models)"
    print(f"{len(specs)} models, {side_by_side(specs, torch.device(device))} at a time")
    with tempfile.TemporaryDirectory() as home:
        zoo = Zoo(home)
        start = time.perf_counter()
        zoo.train_many(specs, device=device)
        total = time.perf_counter() - start
        print(f"{'model':45s} {'test acc':>8s} {'seconds':>8s}")
        for spec in specs:
            meta = zoo.metadata(spec)
            print(f"{spec.name:45s} {meta['test_acc']:8.4f} {meta['train_seconds']:8.1f}")
    if names:
        print(f"{what} wall time: {total:.1f} s on {device} ({load()})")
        return total
    verdict = "PASS" if total < 90 else "MISS"
    print(f"{what} wall time: {total:.1f} s on {device} (target < 90 s): {verdict} ({load()})")
    return total


def bench_cifar_epoch(device: str, epochs: int, batch_size: int, images: int, amp: bool = True) -> float:
    info = get_info("cifar10")
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (images,), generator=gen)
    small = TensorDataset(x[:512], y[:512])
    data = DatasetBundle(info, TensorDataset(x, y), small, small)
    spec = ModelSpec(dataset="cifar10", arch="resnet18", epochs=epochs)
    result = train_model(spec, data=data, device=device, batch_size=batch_size, amp=amp)
    per_epoch = [h.seconds for h in result.history]
    steady = per_epoch[1:] or per_epoch  # the first epoch includes CUDA warm-up
    seconds = sum(steady) / len(steady)
    print(
        f"full-width CIFAR ResNet18, {images} images, batch {batch_size} on {device}, amp={amp}: "
        f"{seconds:.2f} s/epoch (epochs measured: {', '.join(f'{s:.2f}' for s in per_epoch)})"
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-preset", action="store_true")
    parser.add_argument("--demo", action="store_true", help="time the quick demo zoo instead of the preset")
    parser.add_argument("--threads", action="store_true", help="one thread against the default, one model")
    parser.add_argument("--cifar-epoch", action="store_true", help="also time full-width CIFAR ResNet18 epochs")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--images", type=int, default=45_000)
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    if args.threads:
        bench_threads(device)
    elif not args.skip_preset:
        bench_preset(device, QUICK_DEMO if args.demo else None)
    if args.cifar_epoch:
        bench_cifar_epoch(device, args.epochs, args.batch, args.images, amp=False)
        if device.startswith("cuda"):
            bench_cifar_epoch(device, args.epochs, args.batch, args.images, amp=True)


if __name__ == "__main__":
    main()
