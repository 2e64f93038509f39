"""Helpers for tests of imported networks (#21): a small digits classifier trained for a moment and saved as a
torch.export program (.pt2), and copies of test-zoo models into a test's own store (nothing retrains)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import TEST_ZOO_DIR

from trend_core.config.specs import ModelSpec


def linear_net(digits, seed: int = 0, epochs: int = 40) -> nn.Module:
    """A linear classifier on the 64 digits pixels (inputs in [0, 1]), trained for a moment (about 90%)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x, y = digits.tensors("train")
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(epochs):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    return net.eval()


def linear_program(digits, path: Path, seed: int = 0, epochs: int = 40) -> Path:
    """``linear_net`` exported to ``path`` (a .pt2 file)."""
    from trend_core.models.exported import save_program

    return save_program(linear_net(digits, seed, epochs), digits.tensors("train")[0][:2], path)


def copy_zoo_model(home: Path, name: str) -> None:
    """Copy a trained test-zoo model's files into ``home``'s zoo (the test zoo trains it on first use)."""
    key = ModelSpec.parse(name).key
    (home / "models").mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".safetensors"):
        shutil.copy(TEST_ZOO_DIR / "models" / f"{key}{suffix}", home / "models" / f"{key}{suffix}")
