"""Carlini-Wagner L2: the smallest L2 perturbation found by Adam in tanh space, c chosen by binary search.

Minimises ``||x' - x||^2 + c * f(x')`` over ``x' = (tanh(w) + 1) / 2`` (always a valid image) with
``f = max(Z_y - max_{i != y} Z_i, -kappa)``. The binary search over c runs per image but batched: every image
has its own c, bounds and best result, and one Adam run per search step serves the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from trend_core.attacks.base import MAX_STEPS, Attack, check_float, check_int
from trend_core.config.profiles import get_profile

TANH_MARGIN = 1e-6  # keeps atanh finite for pixels at exactly 0 or 1
C_UNBOUNDED = 1e10  # "no successful c yet": the search multiplies c by 10 until an upper bound exists
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
ADVERTORCH_START_LOSS = 1e6  # advertorch's previous loss before the first check
ADVERTORCH_TOLERANCE = 0.999999  # and its abort test: loss > previous * this


def margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """CW's f6 = max(Z_y - max_{i != y} Z_i, -kappa) per image, and whether Z_y + kappa < the best other.

    The true class is masked with -inf (not zero), so the result is right when every logit is negative.
    """
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return (true_logit - other).clamp(min=-kappa), other > true_logit + kappa


def to_tanh_space(x: torch.Tensor) -> torch.Tensor:
    return torch.atanh((2 * x - 1).clamp(-1 + TANH_MARGIN, 1 - TANH_MARGIN))


class CarliniWagnerL2(Attack):
    """CW-L2 (Carlini & Wagner 2017), untargeted. Paper settings: 100 steps, kappa 0 or 30.

    ``abort_early`` stops a search step once the total loss has not fallen by 0.01% over a tenth of the
    steps. Under the ``authors`` profile it uses advertorch's rule (the authors' CW): the loss (with the margin
    term max(Z_y - max_other + kappa, 0)) is checked at iterations 0, s/10, 2s/10, ... and the run stops, before
    recording that iterate, when it exceeds the previous check's loss * 0.999999 (1e6 before the first).
    Images never fooled are returned unchanged.
    """

    name = "cw"
    minimum_norm = True
    norm = "l2"

    def __init__(
        self,
        kappa: float = 0.0,
        steps: int = 100,
        lr: float = 0.01,
        binary_search_steps: int = 9,
        initial_c: float = 1e-3,
        abort_early: bool = True,
        eps: float | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        profile: str = "paper",
    ):
        super().__init__(eps, batch_size, seed)
        self.profile = get_profile(profile).name
        self._advertorch_abort = get_profile(profile).cw_abort == "advertorch"
        self.kappa = check_float("CW kappa", kappa, 0.0, strict=False)
        self.steps = check_int("CW steps", steps, maximum=MAX_STEPS)
        self.lr = check_float("CW lr", lr)
        self.binary_search_steps = check_int("CW binary_search_steps", binary_search_steps)
        self.initial_c = check_float("CW initial_c", initial_c)
        self.abort_early = bool(abort_early)

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        x = x.detach()
        n, view = len(x), (-1,) + (1,) * (x.dim() - 1)
        w_start = to_tanh_space(x)
        c = torch.full((n,), self.initial_c, device=x.device)
        lower = torch.zeros(n, device=x.device)
        upper = torch.full((n,), C_UNBOUNDED, device=x.device)
        best_l2sq = torch.full((n,), float("inf"), device=x.device)
        best_adv = x.clone()
        for _ in range(self.binary_search_steps):
            succeeded = self._optimise(model, x, y, w_start, c.view(view), best_l2sq, best_adv)
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(upper < C_UNBOUNDED / 10, (lower + upper) / 2, c * 10)
        return best_adv

    def _optimise(self, model, x, y, w_start, c, best_l2sq, best_adv) -> torch.Tensor:
        """One Adam run at fixed per-image c; updates best_l2sq/best_adv in place, returns who succeeded."""
        w = w_start.clone()
        m, v = torch.zeros_like(w), torch.zeros_like(w)
        succeeded = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        check_every, previous = max(self.steps // 10, 1), float("inf")
        if self._advertorch_abort:
            previous = ADVERTORCH_START_LOSS
        beta1, beta2 = ADAM_BETAS
        for step in range(1, self.steps + 1):
            tanh_w = torch.tanh(w)
            x_adv = ((tanh_w + 1) / 2).requires_grad_(True)
            logits = model(x_adv)
            f, fooled = margin_loss(logits.float(), y, self.kappa)
            (grad_f,) = torch.autograd.grad((c.flatten() * f).sum(), x_adv)
            x_adv = x_adv.detach()
            delta = x_adv - x
            l2sq = delta.flatten(1).pow(2).sum(dim=1)
            if self.abort_early and self._advertorch_abort and (step - 1) % check_every == 0:
                loss = float((l2sq + c.flatten() * (f.detach() + self.kappa)).sum())
                if loss > previous * ADVERTORCH_TOLERANCE:
                    break
                previous = loss
            # track the best successful iterate (the logits belong to x_adv, before the update)
            improved = fooled & (l2sq < best_l2sq)
            best_l2sq.copy_(torch.where(improved, l2sq, best_l2sq))
            best_adv.copy_(torch.where(improved.view(c.shape), x_adv, best_adv))
            succeeded |= fooled
            # chain rule through x' = (tanh(w) + 1) / 2, then one Adam step (as torch.optim.Adam)
            grad_w = (grad_f + 2 * delta) * (1 - tanh_w * tanh_w) / 2
            m.mul_(beta1).add_(grad_w, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad_w, grad_w, value=1 - beta2)
            denom = (v / (1 - beta2**step)).sqrt_().add_(ADAM_EPS)
            w.addcdiv_(m, denom, value=-self.lr / (1 - beta1**step))
            if self.abort_early and not self._advertorch_abort and step % check_every == 0:
                loss = float((l2sq + c.flatten() * f.detach()).sum())
                if loss > previous * 0.9999:
                    break
                previous = loss
        return succeeded
