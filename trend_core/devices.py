"""Device choice: 'auto' takes CUDA when present, else the CPU; asking for CUDA without one is a user error."""

from __future__ import annotations

import torch

from .errors import TrendError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrendError("CUDA was asked for but no CUDA GPU is visible to PyTorch; use --device cpu or auto.")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise TrendError(f"Unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}.")


def describe_devices() -> str:
    """One line on what was found, for the sidebar and `trend --version`-style output."""
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return f"CUDA: {names}"
    return f"CPU only ({torch.get_num_threads()} threads)"
