"""Training benchmark.

    python bench/train.py                 # wall time of the whole digits preset on this machine (target < 90 s)
    python bench/train.py --cifar-epoch   # + seconds per epoch of a full-width CIFAR ResNet18 (45,000 images)

The preset is trained into a fresh temporary zoo so nothing is served from a cache. The CIFAR epoch uses
random images of CIFAR's shape (the timing does not depend on pixel values), so it runs where CIFAR is absent.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trend_core.data import DatasetBundle, get_info  # noqa: E402
from trend_core.devices import resolve_device  # noqa: E402
from trend_core.specs import ModelSpec  # noqa: E402
from trend_core.train import train_model  # noqa: E402
from trend_core.zoo import Zoo, preset_specs  # noqa: E402


def bench_preset(device: str) -> float:
    with tempfile.TemporaryDirectory() as home:
        zoo = Zoo(home)
        start = time.perf_counter()
        print(f"{'model':45s} {'test acc':>8s} {'seconds':>8s}")
        for spec in preset_specs("digits"):
            t0 = time.perf_counter()
            zoo.get_or_train(spec, device=device)
            print(f"{spec.name:45s} {zoo.metadata(spec)['test_acc']:8.4f} {time.perf_counter() - t0:8.1f}")
        total = time.perf_counter() - start
    verdict = "PASS" if total < 90 else "MISS"
    print(f"digits preset (12 models) wall time: {total:.1f} s on {device} (target < 90 s): {verdict}")
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
    print(f"full-width CIFAR ResNet18, {images} images, batch {batch_size} on {device}, amp={amp}: "
          f"{seconds:.2f} s/epoch (epochs measured: {', '.join(f'{s:.2f}' for s in per_epoch)})")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-preset", action="store_true")
    parser.add_argument("--cifar-epoch", action="store_true", help="also time full-width CIFAR ResNet18 epochs")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--images", type=int, default=45_000)
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    if not args.skip_preset:
        bench_preset(device)
    if args.cifar_epoch:
        bench_cifar_epoch(device, args.epochs, args.batch, args.images, amp=False)
        if device.startswith("cuda"):
            bench_cifar_epoch(device, args.epochs, args.batch, args.images, amp=True)


if __name__ == "__main__":
    main()
