"""Square attack (Andriushchenko et al. 2020), L-inf: random search that needs only the model's scores.

No gradient is ever computed, so gradient masking (quantized inputs, halftoning, a vote) cannot fool it: if
Square beats the gradient attacks, their gradients were misleading. Start: vertical stripes of +-eps. Each
query changes one random s x s square of every still-robust image to a fresh +-eps per channel, and keeps the
change when the margin z_y - max_{i != y} z_i went down. The square's area is a fraction p of the image that
shrinks on the authors' schedule (p_init halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of
10,000 queries, rescaled to ``queries``). Squares are drawn per image, batched.
"""

from __future__ import annotations

import math

import torch

from trend_core.attacks.base import Attack, check_float, check_int
from trend_core.attacks.objective import Objective, attack_runner
from trend_core.errors import TrendError

SCHEDULE = ((10, 2), (50, 4), (200, 8), (500, 16), (1000, 32), (2000, 64), (4000, 128), (6000, 256), (8000, 512))


def square_fraction(p_init: float, query: int, queries: int) -> float:
    """The fraction of the image a square covers at ``query`` (the schedule is written for 10,000 queries)."""
    it = int(query / queries * 10000)
    divisor = 1
    for start, div in SCHEDULE:
        if it > start:
            divisor = div
    return p_init / divisor


class Square(Attack):
    """Square attack, L-inf, untargeted, score-based; ``queries`` model evaluations per image at most; ``eps=None``:
    the attacked model's dataset default (see ``Attack``)."""

    name = "square"

    def __init__(
        self,
        eps: float | None = None,
        queries: int = 1000,
        p_init: float = 0.8,
        restarts: int = 1,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        super().__init__(eps, batch_size, seed)
        self.queries = check_int("Square queries", queries, 2)
        self.p_init = check_float("Square p_init", p_init)
        if self.p_init > 1:
            raise TrendError(f"Square p_init is a fraction of the image in (0, 1], got {p_init}.")
        self.restarts = check_int("Square restarts", restarts)

    def runner(self, model):
        return attack_runner(model)

    @torch.inference_mode()
    def perturb(self, model, x, y, eps, generator):
        objective = Objective(model, "margin")
        best = x.clone()
        best_score = torch.full((len(x),), 2.0, device=x.device)
        for _ in range(self.restarts):
            todo = (best_score > 0).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            adv, score = self._run(objective, x[todo], y[todo], eps, generator)
            better = score < best_score[todo]
            best[todo[better]], best_score[todo[better]] = adv[better], score[better]
        return best

    def _run(
        self, objective: Objective, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        signs = torch.randint(0, 2, (b, c, 1, w), generator=generator, device=x.device).to(x.dtype) * 2 - 1
        adv = (x + eps * signs).clamp(0, 1)
        loss, _, score = objective(adv, y, gradient=False)
        best_adv, best_score = adv.clone(), score.clone()
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        for query in range(self.queries - 1):
            active = (best_score > 0).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            p = square_fraction(self.p_init, query, self.queries)
            side = min(max(int(round(math.sqrt(p * h * w))), 1), h - 1, w - 1) if min(h, w) > 1 else 1
            n = active.numel()
            top = torch.randint(0, h - side + 1, (n, 1, 1, 1), generator=generator, device=x.device)
            left = torch.randint(0, w - side + 1, (n, 1, 1, 1), generator=generator, device=x.device)
            inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
            fresh = torch.randint(0, 2, (n, c, 1, 1), generator=generator, device=x.device).to(x.dtype) * 2 - 1
            xa = x[active]
            candidate = torch.where(inside, xa + eps * fresh, adv[active])
            candidate = torch.minimum(torch.maximum(candidate, xa - eps), xa + eps).clamp(0, 1)
            new_loss, _, new_score = objective(candidate, y[active], gradient=False)
            improved = new_loss > loss[active]  # the loss is -margin: higher is closer to fooling
            take = active[improved]
            adv[take], loss[take] = candidate[improved], new_loss[improved]
            lower = new_score < best_score[active]
            best_adv[active[lower]], best_score[active[lower]] = candidate[lower], new_score[lower]
        return best_adv, best_score
