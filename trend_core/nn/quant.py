"""Quantization layers: input quantization (Qn), halftoning (HT, HT-FS), DoReFa weights and activations.

Every non-differentiable step passes gradients by BPDA (Athalye et al.): the forward pass computes the
quantized value, the backward pass uses the identity (straight-through) or, for HT, a smooth substitute.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FULL_PRECISION_BITS = 32


def straight_through(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """Forward exactly ``value``, backward the gradient of ``surrogate`` (BPDA).

    Written as value + (s - s.detach()) rather than s + (value - s).detach(): the added term is exactly zero,
    so quantized levels stay exact instead of picking up rounding error.
    """
    return value.detach() + (surrogate - surrogate.detach())


class InputQuantizer(nn.Module):
    """n-bit input quantization of the TREND paper on normalized inputs, identity backward.

    ``lo``/``hi`` are per-channel bounds of the normalized range (what pixel 0 and 1 map to), so one image's
    quantization never depends on its batch; ``per_batch=True`` uses the minibatch min/max instead (the paper's).
    """

    def __init__(self, bits: int, lo: torch.Tensor, hi: torch.Tensor, per_batch: bool = False):
        super().__init__()
        if not 1 <= bits <= 16:
            raise ValueError(f"input quantization bits must be 1..16, got {bits}")
        self.bits = bits
        self.per_batch = per_batch
        self.register_buffer("lo", lo.reshape(1, -1, 1, 1).clone(), persistent=False)
        self.register_buffer("hi", hi.reshape(1, -1, 1, 1).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_batch:
            lo, hi = x.detach().amin(), x.detach().amax()
        else:
            lo, hi = self.lo, self.hi
        levels = 2**self.bits
        width = (hi - lo).clamp_min(1e-12) / levels
        index = torch.floor((x.detach() - lo) / width).clamp(0, levels - 1)
        quantized = index * width + (width / 2 + lo)
        return straight_through(quantized, x)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_batch={self.per_batch}"


HALFTONE_KERNEL = torch.tensor([[-1.0, -2.0, -1.0], [-2.0, 16.0, -2.0], [-1.0, -2.0, -1.0]])


class Halftone(nn.Module):
    """HT: the TREND authors' halftoning; output in {0, 1} per channel.

    Each image is normalized by its own mean and range (max - min) over all of (C, H, W), as the authors do, then
    every channel is filtered with a 3x3 sharpening kernel plus 1e-3 and thresholded at 0. Backward uses the
    smooth substitute 0.5 * sigmoid(filter) + 0.5 of the same normalized image.
    """

    def __init__(self, channels: int):
        super().__init__()
        kernel = HALFTONE_KERNEL.expand(channels, 1, 3, 3).clone()
        self.register_buffer("kernel", kernel, persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)  # per image over (C, H, W), not per channel
        spread = (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True)).clamp_min(1e-6)
        normalized = (x - mean) / spread
        filtered = F.conv2d(normalized, self.kernel, padding=1, groups=self.channels) + 1e-3
        hard = (filtered > 0).to(x.dtype)
        smooth = 0.5 * torch.sigmoid(filtered) + 0.5
        return straight_through(hard, smooth)


def floyd_steinberg(x: torch.Tensor) -> torch.Tensor:
    """Floyd-Steinberg error diffusion to {0, 1} of images in [0, 1], per channel, batched.

    Pixels are visited in wavefronts t = 2*row + col: every pixel of one wavefront depends only on earlier
    ones, so the loop runs W + 2H times over tensors instead of H*W times over pixels, and gives exactly the
    result of the raster-order algorithm.
    """
    n, c, h, w = x.shape
    work = F.pad(x.detach().to(torch.float32), (1, 1, 0, 1))  # guard columns left/right, guard row below
    out = torch.zeros(n, c, h, w, dtype=torch.float32, device=x.device)
    rows_all = torch.arange(h, device=x.device)
    for t in range(w + 2 * (h - 1)):
        rows = rows_all[(t - 2 * rows_all >= 0) & (t - 2 * rows_all < w)]
        if rows.numel() == 0:
            continue
        cols = t - 2 * rows
        pc = cols + 1  # padded column index
        old = work[:, :, rows, pc]
        new = (old >= 0.5).to(old.dtype)
        err = old - new
        out[:, :, rows, cols] = new
        work[:, :, rows, pc + 1] += err * (7 / 16)
        work[:, :, rows + 1, pc - 1] += err * (3 / 16)
        work[:, :, rows + 1, pc] += err * (5 / 16)
        work[:, :, rows + 1, pc + 1] += err * (1 / 16)
    return out.to(x.dtype)


class FloydSteinbergHalftone(nn.Module):
    """HT-FS: Floyd-Steinberg halftoning of the pixel image (mapped back from the normalized range),
    identity backward."""

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor):
        super().__init__()
        self.register_buffer("lo", lo.reshape(1, -1, 1, 1).clone(), persistent=False)
        self.register_buffer("hi", hi.reshape(1, -1, 1, 1).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = ((x - self.lo) / (self.hi - self.lo)).clamp(0, 1)
        return straight_through(floyd_steinberg(pixels), pixels)


def quantize_unit(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round values in [0, 1] to 2^bits evenly spaced levels (DoReFa's quantize_k), straight-through."""
    levels = 2**bits - 1
    return straight_through(torch.round(x * levels) / levels, x)


def dorefa_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa weight quantization as the TREND authors do it: t = tanh(w), m = max|t| (constant for the
    gradient), W = m * (2 * round_k(t / 2m + 1/2) - 1), straight-through rounding.

    The factor m keeps the layer's scale (levels in [-m, m], not [-1, 1]): without it a BatchNorm-free network
    diverges, and every weight gradient is 1/m too large. One bit is the same formula: W = +-m.
    """
    if bits >= FULL_PRECISION_BITS:
        return weight
    t = torch.tanh(weight)
    scale = t.abs().max().detach()
    unit = t / (2 * scale.clamp_min(1e-12)) + 0.5
    return scale * (2 * quantize_unit(unit, bits) - 1)


class QConv2d(nn.Conv2d):
    """Conv2d whose weights are DoReFa-quantized to ``weight_bits`` in the forward pass.

    Its state_dict is that of a plain Conv2d (the full-precision shadow weights), so ordinary checkpoints load.
    """

    def __init__(self, *args, weight_bits: int = FULL_PRECISION_BITS, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_bits = weight_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, dorefa_weight(self.weight, self.weight_bits), self.bias)


class QLinear(nn.Linear):
    """Linear layer with DoReFa-quantized weights (see QConv2d)."""

    def __init__(self, *args, weight_bits: int = FULL_PRECISION_BITS, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_bits = weight_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, dorefa_weight(self.weight, self.weight_bits), self.bias)


class QReLU(nn.Module):
    """Activation: ReLU at full precision, else DoReFa's clamp to [0, 1] and k-bit rounding (STE)."""

    def __init__(self, act_bits: int = FULL_PRECISION_BITS):
        super().__init__()
        self.act_bits = act_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_bits >= FULL_PRECISION_BITS:
            return F.relu(x)
        return quantize_unit(x.clamp(0, 1), self.act_bits)

    def extra_repr(self) -> str:
        return f"act_bits={self.act_bits}"
