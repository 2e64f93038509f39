"""Projected gradient descent: the one iteration that PGD and every ensemble attack share.

``pgd_loop`` walks ``x_{t+1} = Proj(x_t + step_size * D_t)`` where ``D_t = direction(x_t)``; single-model PGD
uses the sign (L-inf) or the unit-L2 gradient of the cross-entropy, the ensemble attacks plug in their own
direction rules (``attacks/ensemble_pgd.py``).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from trend_core.attacks.base import MAX_STEPS, Attack, check_float, check_int, clip_to_ball
from trend_core.errors import TrendError

Direction = Callable[[torch.Tensor, int], torch.Tensor]  # (x_t, step index) -> D_t, same shape as x_t
PAPER_STEP_SIZE = 0.01  # the TREND paper's PGD step; README "Method defaults"
REACH = 1.25  # steps * step_size covers eps with this margin when 0.01 would fall short


def step_size_for(eps: float, steps: int) -> float:
    """The step size every PGD-style attack uses unless told otherwise (library, CLI, dashboard and jobs alike):
    the paper's 0.01, or ``1.25 eps / steps`` when ``steps`` steps of 0.01 could not reach eps."""
    return max(PAPER_STEP_SIZE, round(REACH * float(eps) / int(steps), 6))


def random_start_point(x: torch.Tensor, radius: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A uniform random point in the L-inf box of ``radius`` (or a random L2 direction scaled into the ball)."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
    if norm == "l2":
        flat = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype).flatten(1)
        radii = torch.rand(len(x), 1, generator=generator, device=x.device, dtype=x.dtype)
        noise = (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12) * radii).view_as(x)
    return (x + radius * noise).clamp(0, 1)


def pgd_loop(
    x: torch.Tensor,
    direction: Direction,
    eps: float,
    steps: int,
    step_size: float,
    norm: str = "linf",
    start_radius: float | None = None,
    generator: torch.Generator | None = None,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Iterate ``steps`` projected steps from x (or a random start of ``start_radius``); returns x_adv.

    Each step projects onto the eps-ball around x and onto [0, 1], so every iterate is a valid image. ``start``
    (a point already in the ball) replaces the first iterate: stacked sources share one random start.
    """
    x_adv = x.detach().clone() if start is None else start.detach().clone()
    if start_radius and start is None:
        x_adv = clip_to_ball(x, random_start_point(x, start_radius, norm, generator), eps, norm)
    if norm == "linf":  # the eps-box intersected with [0, 1] is one per-pixel interval: one clamp per step
        low, high = (x - eps).clamp_(min=0), (x + eps).clamp_(max=1)
        for t in range(steps):
            x_adv = torch.clamp(x_adv.add(direction(x_adv, t), alpha=step_size), low, high)
        return x_adv
    for t in range(steps):
        x_adv = clip_to_ball(x, x_adv + step_size * direction(x_adv, t), eps, norm)
    return x_adv


def gradient_and_logits(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """d/dx of the summed cross-entropy of ``model`` at x, and the (detached) logits of that one forward pass.

    Parameters must not require grad (see ``attack_mode``), so no parameter gradients are computed.
    """
    x = x.detach().requires_grad_(True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad, logits.detach()


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: bool = False) -> torch.Tensor:
    """d/dx of the summed cross-entropy of ``model`` at x (parameters must not require grad)."""
    return gradient_and_logits(model, x, y, autocast)[0]


def gradient_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction for the norm: sign (L-inf) or unit L2 per image."""
    if norm == "linf":
        return grad.sign()
    norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
    return grad / norms


class PGD(Attack):
    """PGD (Madry et al. 2018): random start in the eps-ball, ``steps`` signed-gradient steps, projection.

    Defaults: eps = the attacked model's dataset default (``eps=None``: 8/255 on CIFAR as in the paper, 0.1 on
    digits, 0.15 on mnist, x4 for L2; a model without a dataset needs an explicit eps), 40 steps, step size
    0.01, L-inf (``step_size=None`` means ``step_size_for(eps, steps)``, which is 0.01 unless 40 steps of it
    cannot reach eps). ``norm="l2"`` gives
    the L2 variant (then eps and step_size are L2 lengths). ``autocast=True`` runs the model in bf16 on CUDA.
    Images ``x`` are (B, C, H, W) in [0, 1], labels ``y`` (B,); the model maps pixels to logits.

    >>> attack = PGD(eps=8 / 255, steps=40)    # doctest: +SKIP
    >>> result = attack(model, x, y)             # doctest: +SKIP
    >>> result.robust_accuracy, result.success_rate  # doctest: +SKIP
    """

    name = "pgd"

    def __init__(
        self,
        eps: float | None = None,
        steps: int = 40,
        step_size: float | None = None,
        random_start: bool = True,
        norm: str = "linf",
        autocast: bool = False,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        if norm not in ("linf", "l2"):
            raise TrendError(f"PGD norm must be 'linf' or 'l2', got {norm!r}.")
        self.norm = norm  # set before the base class validates eps against this norm
        super().__init__(eps, batch_size, seed)
        self.steps = check_int("PGD steps", steps, maximum=MAX_STEPS)
        if step_size is None and self.eps is not None:
            step_size = step_size_for(self.eps, self.steps)
        # None (no eps yet): step_size_for the eps each run resolves
        self.step_size = None if step_size is None else check_float("PGD step_size", step_size)
        self.random_start = bool(random_start)
        self.autocast = bool(autocast)

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        def direction(x_t: torch.Tensor, _step: int) -> torch.Tensor:
            return gradient_direction(input_gradient(model, x_t, y, self.autocast), self.norm)

        return pgd_loop(
            x,
            direction,
            float(eps or 0.0),
            self.steps,
            step_size_for(float(eps or 0.0), self.steps) if self.step_size is None else self.step_size,
            self.norm,
            start_radius=eps if self.random_start else None,
            generator=generator,
        )
