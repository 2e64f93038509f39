"""Devices: 'auto' takes CUDA when present, else the CPU (asking for CUDA without one is a user error); the device a
model lives on and batched predictions there (used by the attacks, the vote and the runners alike)."""

from __future__ import annotations

import torch
import torch.nn as nn

from trend_core.errors import TrendError

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


def has_cuda() -> bool:
    """Whether a CUDA device is usable (the sidebar offers "cuda" only then)."""
    return bool(torch.cuda.is_available())


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with neither."""
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predicted classes of ``x`` (on x's device), in eval mode, batched."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        out = [model(x[i : i + batch_size].to(device)).argmax(1).to(x.device) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)
