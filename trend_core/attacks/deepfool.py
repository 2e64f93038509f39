"""DeepFool: step to the nearest linearised decision boundary until the label flips (minimum L2).

Batched over images and candidate classes: each step runs one forward pass for the still-correct images and
one vectorised backward pass that returns the gradients of every candidate logit difference ``Z_k - Z_y``
(autograd with batched cotangents), so there is no Python loop per image or per class. The first forward pass
also gives the clean logits that choose each image's candidates. Images that are misclassified, from the start
or after a step, stop moving.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from trend_core.attacks.base import MAX_STEPS, Attack, check_float, check_int

MIN_STEP = 1e-4  # extra L2 length of every step (as the authors' code): a step that lands on the boundary crosses it


def candidate_gradients(
    x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, candidates: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differences ``Z_k - Z_y`` (n, k) and their input gradients (n, k, *x.shape[1:]).

    ``logits`` come from one forward pass of ``x`` (which requires grad); the k backward passes run as one
    batched backward (``is_grads_batched``), not a loop over classes.
    """
    k = candidates.shape[1]
    rows = torch.arange(len(x), device=x.device)
    cotangents = torch.zeros(k, *logits.shape, dtype=logits.dtype, device=x.device)
    cotangents[torch.arange(k, device=x.device)[:, None], rows, candidates.T] += 1
    cotangents[:, rows, y] -= 1
    (grads,) = torch.autograd.grad(logits, x, grad_outputs=cotangents, is_grads_batched=True)
    logits = logits.detach()
    differences = logits.gather(1, candidates) - logits.gather(1, y[:, None])
    return differences, grads.transpose(0, 1)


def other_top_classes(logits: torch.Tensor, y: torch.Tensor, count: int) -> torch.Tensor:
    """Per image, the ``count - 1`` classes other than y with the highest logits (DeepFool's candidates)."""
    k = min(count, logits.shape[1]) - 1
    return logits.scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices


class DeepFool(Attack):
    """DeepFool (Moosavi-Dezfooli et al. 2016), L2, untargeted, over the ``candidates`` classes with the
    highest clean logits. As in the authors' code, each step adds the linearised step to the nearest boundary
    to a running total r and the image becomes ``clip(x + (1 + overshoot) * r, 0, 1)``: the overshoot grows
    with the whole perturbation, so an image close to a boundary crosses it by more than float rounding (a
    per-step overshoot shrinks with the step and can stall on a GPU's TF32 noise).
    """

    name = "deepfool"
    minimum_norm = True
    resumable = True  # started from an already perturbed image, it simply continues from there
    norm = "l2"

    def __init__(
        self,
        steps: int = 50,
        overshoot: float = 0.02,
        candidates: int = 10,
        eps: float | None = None,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        super().__init__(eps, batch_size, seed)
        self.steps = check_int("DeepFool steps", steps, maximum=MAX_STEPS)
        self.overshoot = check_float("DeepFool overshoot", overshoot, 0.0, strict=False)
        self.candidates = check_int("DeepFool candidates", candidates, minimum=2)

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        x = x.detach()
        x_adv, total = x.clone(), torch.zeros_like(x)  # total: the sum of the linearised steps, r_tot
        active = torch.arange(len(x), device=x.device)  # the images still classified correctly
        candidates = None  # per image, chosen from the clean logits that the first forward pass gives
        moves = 0
        while moves < self.steps and active.numel():
            x_t = x_adv[active].requires_grad_(True)
            logits = model(x_t)
            if candidates is None:
                candidates = other_top_classes(logits.detach(), y, self.candidates)
            correct = logits.detach().argmax(1) == y[active]
            n_kept = int(correct.sum())
            if n_kept < len(correct) and refresh_pays(len(correct) - n_kept, n_kept, candidates.shape[1], x):
                active = active[correct]  # fooled (or wrong from the start): done
                continue
            diff, grads = candidate_gradients(x_t, logits, y[active], candidates[active])
            keep = correct.nonzero().squeeze(1)
            active, diff, grads = active[keep], diff[keep], grads[keep]
            norms = self.dual_norms(grads)
            nearest = (diff.abs() / norms).argmin(1)
            rows = torch.arange(len(active), device=x.device)
            w, w_norm = grads[rows, nearest], norms[rows, nearest]
            # the step to the nearest linearised boundary, MIN_STEP longer; the overshoot scales the total
            total[active] += self.step_to_boundary(
                per_image(diff[rows, nearest].abs() / w_norm + MIN_STEP, w), w, w_norm
            )
            x_adv[active] = (x[active] + (1 + self.overshoot) * total[active]).clamp(0, 1)
            moves += 1
        return x_adv

    @staticmethod
    def dual_norms(grads: torch.Tensor) -> torch.Tensor:
        """Per image and candidate, the norm of the gradient that divides a logit gap into a distance (L2)."""
        return grads.flatten(2).norm(dim=2).clamp_min(1e-12)

    @staticmethod
    def step_to_boundary(distance: torch.Tensor, w: torch.Tensor, w_norm: torch.Tensor) -> torch.Tensor:
        """The move of length ``distance`` along the steepest direction of ``w`` (L2: w / ||w||)."""
        return distance / per_image(w_norm, w) * w


class DeepFoolLinf(DeepFool):
    """L-inf DeepFool, as foolbox's LinfDeepFoolAttack that the TREND paper's DeepFool rows come from: the distance
    to a linearised boundary is |Z_k - Z_y| / ||grad||_1 and each step moves (distance + 1e-4) * sign(grad); 40
    steps by default. Clip it to an eps (the paper's 8/255) with ``eps`` or the transfer run's eps list.
    """

    name = "deepfool-linf"
    norm = "linf"

    def __init__(
        self,
        steps: int = 40,
        overshoot: float = 0.02,
        candidates: int = 10,
        eps: float | None = None,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        super().__init__(steps, overshoot, candidates, eps, batch_size, seed)

    @staticmethod
    def dual_norms(grads: torch.Tensor) -> torch.Tensor:
        return grads.flatten(2).abs().sum(dim=2) + 1e-8

    @staticmethod
    def step_to_boundary(distance: torch.Tensor, w: torch.Tensor, w_norm: torch.Tensor) -> torch.Tensor:
        return distance * w.sign()


def refresh_pays(done: int, kept: int, gradients: int, like: torch.Tensor) -> bool:
    """Whether a fresh forward pass of the ``kept`` images costs less than the ``gradients`` backward passes that
    the ``done`` images would otherwise ride along in. On a CPU work is counted in rows; a GPU computes the extra
    rows in parallel and would pay a whole pass of latency for the refresh, so it never refreshes."""
    return like.device.type == "cpu" and done * gradients > kept


def per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-image values shaped to broadcast over images like ``like``."""
    return values.view(-1, *[1] * (like.dim() - 1))
