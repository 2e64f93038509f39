"""A defender's own networks, end to end: two networks this project does not define are trained briefly on digits,
exported with ``torch.export`` to .pt2 files, and the `trend zoo import` commands that adopt them are printed.

    python scripts/defender_example.py /tmp/my-nets

One network is a plain ``nn.Sequential`` that takes pixels in [0, 1]; the other is a small torchvision-style ResNet
class written here that takes normalized images ((x - MEAN) / STD). After the imports, e.g.

    trend transfer --models digits/resnet18-w0.25/FP/sgd/s0 user/digits/seq-cnn user/digits/tiny-resnet
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from trend_core.data.datasets import load_dataset  # (only for the images: the networks are the script's own)

MEAN, STD = 0.5, 0.25  # the normalization the ResNet is trained with (any constants: the import records them)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3x3 convolutions with BatchNorm and a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A two-stage ResNet for 1-channel 8x8 images; takes normalized inputs."""

    def __init__(self, classes: int = 10, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = BasicBlock(width, width)
        self.layer2 = BasicBlock(width, 2 * width, stride=2)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def sequential_cnn(classes: int = 10) -> nn.Sequential:
    """A plain CNN that takes pixels in [0, 1]."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, classes),
    )


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, normalize: bool, epochs: int = 15) -> float:
    """A few epochs of Adam on the images (normalized first when the network expects it); train accuracy."""
    inputs = (x - MEAN) / STD if normalize else x
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            F.cross_entropy(net(inputs[batch]), y[batch]).backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        return float((net(inputs).argmax(1) == y).float().mean())


def export(net: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """What a defender does with any network: torch.export with a dynamic batch dimension, saved as .pt2."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(net.eval(), (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="where the .pt2 files are written (created if missing)")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # 8x8 images: one thread is fastest
    torch.manual_seed(0)
    x, y = load_dataset("digits").tensors("train")
    start = time.perf_counter()
    seq = sequential_cnn()
    seq_acc = train(seq, x, y, normalize=False)
    resnet = TinyResNet()
    resnet_acc = train(resnet, x, y, normalize=True)
    seq_path = export(seq, x[:2], folder / "seq_cnn.pt2")
    resnet_path = export(resnet, (x[:2] - MEAN) / STD, folder / "tiny_resnet.pt2")
    print(
        f"trained and exported 2 networks in {time.perf_counter() - start:.1f} s "
        f"(train accuracy {seq_acc:.3f} and {resnet_acc:.3f}); import them with:"
    )
    print(f"trend zoo import user/digits/seq-cnn {shlex.quote(str(seq_path))} --expects pixels")
    print(
        f"trend zoo import user/digits/tiny-resnet {shlex.quote(str(resnet_path))} --expects normalized "
        f"--mean {MEAN} --std {STD}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
