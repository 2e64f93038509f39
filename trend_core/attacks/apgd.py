"""APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness..."): PGD without a step size to tune.

Per image: start at a random point on the eps-ball's surface, step size 2 eps; each step moves along the sign
(L-inf) or the unit gradient (L2) and mixes in 25% of the previous move (momentum 0.75, none on the first step;
after a return to the best point the move is taken from the iterate before it, as in the authors' code). At
checkpoints w_j (w_1 = 0.22 n, each next gap 0.03 n shorter, at least 0.06 n) an
image halves its step and returns to its best point when the loss rose in fewer than rho = 75% of the steps
since the last checkpoint, or when the step was kept last time and the best loss has not improved. Restarts
attack again, from new random points, only the images still classified correctly. Losses: cross-entropy
(``ce``) or the difference of logits ratio (``dlr``, scale invariant). For a majority vote the loss is
averaged over ``eot_draws`` tie-break draws, and the image kept is the one the vote gets right least often.
"""

from __future__ import annotations

import torch

from trend_core.attacks.base import Attack, check_float, check_int
from trend_core.attacks.objective import Objective, attack_runner, check_loss
from trend_core.errors import TrendError


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve a step: w_1 = 0.22 n, each next gap 0.03 n shorter than the last,
    at least 0.06 n (integer gaps, as in the authors' code: 22, 41, 57, 70, 80, 87, 93, 99 for n = 100)."""
    gap, shrink, smallest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    marks, at = [], gap
    while at < steps:
        marks.append(at)
        gap = max(gap - shrink, smallest)
        at += gap
    return marks


def project(x: torch.Tensor, x_new: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """x_new projected onto the eps-ball around x and into [0, 1]."""
    if norm == "linf":
        return torch.minimum(torch.maximum(x_new, x - eps), x + eps).clamp(0, 1)
    delta = x_new - x
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
    return (x + delta * (eps / norms).clamp(max=1.0)).clamp(0, 1)


def start_point(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """Croce & Hein's start: a random direction scaled to the ball's surface (L-inf: uniform noise divided by its
    largest entry, so some pixel moves by exactly eps; L2: a Gaussian direction of norm eps), then into [0, 1]."""
    shape = (-1, *[1] * (x.dim() - 1))
    if norm == "linf":
        t = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        t = t / t.flatten(1).abs().amax(dim=1).clamp_min(1e-12).view(shape)
    else:
        t = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        t = t / t.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape)
    return (x + eps * t).clamp(0, 1)


def unit(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return grad.sign()
    return grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))


class APGD(Attack):
    """APGD-CE / APGD-DLR, untargeted, L-inf or L2 (eps and distances in pixels of [0, 1]).

    ``eps=None``: the attacked model's dataset default (see ``Attack``). ``steps`` iterations per restart
    (default 100), ``restarts`` random restarts on the images still robust, ``rho`` the checkpoint condition,
    ``eot_draws`` tie-break draws averaged for a majority-vote ensemble.
    """

    name = "apgd"

    def __init__(
        self,
        eps: float | None = None,
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        norm: str = "linf",
        rho: float = 0.75,
        eot_draws: int = 1,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        if norm not in ("linf", "l2"):
            raise TrendError(f"APGD norm must be 'linf' or 'l2', got {norm!r}.")
        self.norm = norm
        super().__init__(eps, batch_size, seed)
        self.loss = check_loss(loss)
        if self.loss == "margin":
            raise TrendError("APGD's loss is 'ce' or 'dlr'.")
        self.steps = check_int("APGD steps", steps)
        self.restarts = check_int("APGD restarts", restarts)
        self.rho = check_float("APGD rho", rho)
        self.eot_draws = check_int("APGD eot_draws", eot_draws)

    def runner(self, model):
        return attack_runner(model)

    def perturb(self, model, x, y, eps, generator):
        objective = Objective(model, self.loss, self.eot_draws)
        if self.loss == "dlr":
            with torch.inference_mode():
                classes = model(x[:1]).shape[-1]
            if classes < 3:
                raise TrendError("APGD-DLR needs at least 3 classes; use the cross-entropy loss.")
        best = x.detach().clone()
        best_score = torch.full((len(x),), 2.0, device=x.device)  # above any correctness: the first run sets it
        for _ in range(self.restarts):
            todo = (best_score > 0).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            adv, score = self._run(objective, x[todo], y[todo], eps, generator)
            better = score < best_score[todo]
            best[todo[better]] = adv[better]
            best_score[todo[better]] = score[better]
        return best

    def _run(
        self, objective: Objective, x: torch.Tensor, y: torch.Tensor, eps: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One APGD run from a random start: the least-correct point seen per image and its correctness.

        An image leaves the loop once it is fooled for sure (correctness 0): its answer cannot improve."""
        n = self.steps
        shape = (-1, *[1] * (x.dim() - 1))
        x_adv = start_point(x, eps, self.norm, generator)
        step = torch.full((len(x),), 2.0 * eps, device=x.device).view(shape)
        loss, grad, score = objective(x_adv, y)
        best_adv, best_score = x_adv.clone(), score.clone()  # the least-correct point (what is returned)
        x_max, loss_max, grad_max = x_adv.clone(), loss.clone(), grad.clone()  # the highest-loss point
        marks = set(checkpoints(n))
        last_mark = 0
        rises = torch.zeros(len(x), device=x.device)
        loss_max_at_mark = loss_max.clone()
        halved_at_mark = torch.ones(len(x), dtype=torch.bool, device=x.device)
        # the authors' loss history starts at zero, so their first window compares the first step's loss with 0
        # (not with the start's): for DLR, negative while the model is right, one rise fewer and an earlier halving
        previous_loss = torch.zeros_like(loss)
        x_prev = x_adv.clone()
        for i in range(n):
            active = (best_score > 0).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            momentum = 0.75 if i > 0 else 1.0
            xs, here = x[active], x_adv[active]
            z = project(xs, here + step[active] * unit(grad[active], self.norm), eps, self.norm)
            moved = project(xs, here + momentum * (z - here) + (1 - momentum) * (here - x_prev[active]), eps, self.norm)
            x_prev[active], x_adv[active] = here, moved
            loss_a, grad_a, score_a = objective(moved, y[active])
            grad[active] = grad_a
            lower = score_a < best_score[active]
            best_adv[active[lower]], best_score[active[lower]] = moved[lower], score_a[lower]
            rises[active] += (loss_a > previous_loss[active]).float()
            previous_loss[active] = loss_a
            up = loss_a > loss_max[active]
            up_idx = active[up]
            x_max[up_idx], loss_max[up_idx], grad_max[up_idx] = moved[up], loss_a[up], grad_a[up]
            if i + 1 in marks:
                span = i + 1 - last_mark
                oscillating = rises <= self.rho * span
                stalled = (~halved_at_mark) & (loss_max_at_mark >= loss_max)
                halve = oscillating | stalled
                halved_at_mark, loss_max_at_mark = halve, loss_max.clone()
                if halve.any():
                    step[halve] /= 2
                    x_adv = torch.where(halve.view(shape), x_max, x_adv)
                    grad = torch.where(halve.view(shape), grad_max, grad)
                rises.zero_()
                last_mark = i + 1
        # images never fooled: return their highest-loss point (the most useful one to transfer)
        keep = best_score >= 1
        best_adv[keep] = x_max[keep]
        return best_adv, best_score
