"""What the adaptive attacks (APGD, Square) optimize: a per-image loss, its input gradient, and how right the
model still is, for one model or a majority-vote ensemble.

For an ensemble the loss is averaged over several draws of the vote's random tie-break (Expectation over
Transformation): the members run once, each draw only changes which class the vote picks on a tie. How right
the ensemble is on an image is the exact expectation over the tie-break (1, 0, or votes-for-y / N on a tie),
so an attack keeps the image that is wrong most often, not the one that was wrong under one lucky draw.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from trend_core.errors import TrendError
from trend_core.nn.twin import inference_twin
from trend_core.nn.vote import MajorityVote, expected_correct

LOSSES = ("ce", "dlr", "margin")


def check_loss(loss: str) -> str:
    key = str(loss).strip().lower()
    if key not in LOSSES:
        raise TrendError(f"Unknown attack loss {loss!r}; choose one of {', '.join(LOSSES)}.")
    return key


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Croce & Hein's difference of logits ratio, per image: -(z_y - max_{i != y} z_i) / (z_1 - z_3), higher
    is better for the attacker; invariant to shifting and scaling the logits (needs at least 3 classes)."""
    ordered = logits.sort(dim=1).values
    z_y = logits.gather(1, y.view(-1, 1)).squeeze(1)
    top_is_y = (ordered[:, -1] == z_y).float()
    best_other = ordered[:, -2] * top_is_y + ordered[:, -1] * (1 - top_is_y)
    return -(z_y - best_other) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i != y} z_i per image: positive while the model is right."""
    z_y = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return z_y - others.amax(dim=1)


def per_image_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """The attacker's objective per image (higher: closer to fooling)."""
    logits = logits.float()
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    if loss == "dlr":
        return dlr_loss(logits, y)
    return -margin(logits, y)


def attack_runner(model: nn.Module) -> nn.Module:
    """The network an attack iterates on: a model's inference twin, or a vote over its members' twins."""
    if isinstance(model, MajorityVote):
        return MajorityVote([inference_twin(m) for m in model.members], model.seed, model.names)
    return inference_twin(model)


class Objective:
    """``objective(x, y)`` -> (loss per image, d(sum loss)/dx or None, correctness per image in [0, 1]).

    ``draws`` tie-break draws are averaged for a majority vote (seeds seed .. seed + draws - 1); a single model
    ignores it. ``gradient=False`` skips the backward pass (score-based attacks).
    """

    def __init__(self, model: nn.Module, loss: str = "ce", draws: int = 1):
        self.model = model
        self.loss = check_loss(loss)
        self.draws = max(1, int(draws))
        self.vote = model if isinstance(model, MajorityVote) else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, gradient: bool = True):
        with torch.enable_grad() if gradient else torch.inference_mode():
            x_in = x.detach().clone().requires_grad_(True) if gradient else x
            if self.vote is None:
                logits = self.model(x_in).float()
                losses = per_image_loss(logits, y, self.loss)
                correct = (logits.argmax(1) == y).float()
            else:
                losses, correct = self._vote(x_in, y)
            grad = torch.autograd.grad(losses.sum(), x_in)[0] if gradient else None
        return losses.detach(), grad, correct.detach()

    def _vote(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vote = self.vote
        assert vote is not None  # _vote runs only for a MajorityVote
        logits = vote.member_logits(x)  # (N, B, C)
        preds = logits.argmax(dim=-1).detach()
        soft = torch.logsumexp(logits.log_softmax(dim=-1), dim=0) - math.log(len(vote.members))
        total = torch.zeros(len(x), device=x.device)
        for k in range(self.draws):
            decision = vote.decide(preds, x, seed=vote.seed + k, num_classes=logits.shape[-1])
            lift = soft.max(dim=1).values - soft.gather(1, decision.view(-1, 1)).squeeze(1) + 1e-4
            out = soft + (F.one_hot(decision, soft.shape[1]) * lift.unsqueeze(1)).detach()
            total = total + per_image_loss(out, y, self.loss)
        return total / self.draws, expected_correct(preds, y)
