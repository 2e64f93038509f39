"""The majority vote over an ensemble's members: ``MajorityVote`` is an ``nn.Module``, so every attack and
transfer run takes an ensemble where it takes a model.

Its decision is the members' majority vote; where no class has a unique plurality, one member is drawn at random
(seeded, per image) and its prediction used.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from trend_core.config.labels import model_labels
from trend_core.config.profiles import get_profile
from trend_core.errors import TrendError
from trend_core.runtime.devices import predict

_HASH_MODULUS = 2**20  # pixel-hash weights stay below this, so the int64 hash of any image cannot overflow


TIE_RULES = ("any", "all_disagree")


def tiebreak_weights(seed: int, pixels: int) -> tuple[torch.Tensor, int]:
    """The seeded pixel-hash weights and offset that pick a tie's deciding member for ``pixels``-value images."""
    gen = torch.Generator().manual_seed(int(seed))
    weights = torch.randint(1, _HASH_MODULUS, (pixels,), generator=gen, dtype=torch.int64)
    offset = int(torch.randint(0, _HASH_MODULUS, (1,), generator=gen))
    return weights, offset


def tiebreak_members(x: torch.Tensor, weights: torch.Tensor, offset: int, members: int) -> torch.Tensor:
    """Which member decides each image's tie: the hash of its 8-bit pixels, modulo the member count (the same
    image gets the same member in any batch, and in an exported ensemble)."""
    flat = (x.detach().flatten(1).float().clamp(0, 1) * 255).round().to(torch.int64)
    return ((flat * weights).sum(dim=1) + offset).remainder(members)


def drawn_ties(counts: torch.Tensor, ties: str = "any") -> torch.Tensor:
    """Which images (rows of the (B, C) vote counts) a random member decides.

    ``any`` (the paper profile): every tie for the plurality; ``all_disagree`` (the authors' code): only images
    where every member votes for a different class; their other ties go to the lowest tied class (argmax).
    """
    if ties not in TIE_RULES:
        raise TrendError(f"Unknown tie rule {ties!r}; choose one of {', '.join(TIE_RULES)}.")
    top = counts.max(dim=1).values
    if ties == "all_disagree":
        return top == 1
    return (counts == top.unsqueeze(1)).sum(dim=1) > 1


def majority_vote(
    preds: torch.Tensor, tiebreak: torch.Tensor, num_classes: int | None = None, ties: str = "any"
) -> torch.Tensor:
    """The plurality class of each column of ``preds`` (N members, B images); where ``ties`` says the vote is
    drawn (see ``drawn_ties``), member ``tiebreak[b]``'s vote."""
    counts = F.one_hot(preds, num_classes or -1).sum(0)  # (B, C)
    drawn = preds.gather(0, tiebreak.view(1, -1)).squeeze(0)
    return torch.where(drawn_ties(counts, ties), drawn, counts.argmax(dim=1))


def expected_correct(preds: torch.Tensor, y: torch.Tensor, ties: str = "any") -> torch.Tensor:
    """Per image, the probability over the random tie-break that the vote is ``y`` (exact: 1, 0 or votes-for-y / N)."""
    if preds.numel() == 0:
        return torch.zeros(preds.shape[-1], device=preds.device)
    num_classes = int(max(int(preds.max()), int(y.max()))) + 1
    counts = F.one_hot(preds, num_classes).sum(0)
    tie = drawn_ties(counts, ties)
    votes_for_y = counts.gather(1, y.view(-1, 1)).squeeze(1).float()
    unique_right = (~tie) & (counts.argmax(dim=1) == y)
    return torch.where(tie, votes_for_y / preds.shape[0], unique_right.float())


class MajorityVote(nn.Module):
    """Majority vote of member models (pixels in [0, 1] -> logits each); ties broken by a seeded draw per image.

    ``forward`` returns the log of the members' mean softmax, nudged by a detached offset so that its argmax is
    the vote: gradients are those of the mean-probability ensemble (sensible for any gradient attack), the
    decision (``argmax``, ``predict``) is the majority vote. The tie-break draw is a function of the seed and
    the image's content (pixels at 8-bit precision), so an image gets the same draw in any batch or chunk, and
    ``with_seed`` gives another independent draw.
    """

    def __init__(
        self, models: Sequence[nn.Module], seed: int = 0, names: Sequence[str] | None = None, profile: str = "paper"
    ):
        super().__init__()
        self.profile = get_profile(profile).name
        self.ties = get_profile(profile).vote_ties  # which ties a random member decides
        members = [models] if isinstance(models, nn.Module) and not isinstance(models, nn.ModuleList) else list(models)
        if not members:
            raise TrendError("An ensemble needs at least one member model.")
        if not all(isinstance(m, nn.Module) for m in members):
            raise TrendError("Every ensemble member must be a torch nn.Module (pixels in [0, 1] -> logits).")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TrendError(f"The tie-break seed must be a whole number, got {seed!r}.")
        self.members = nn.ModuleList(members)
        self.seed = int(seed)
        if names is None:
            names = model_labels(members)
        if len(names) != len(members):
            raise TrendError(f"Got {len(names)} names for {len(members)} ensemble members.")
        self.names = [str(n) for n in names]
        self.name = "ensemble(" + " + ".join(self.names) + ")"  # its label in transfer runs and tables
        self._hash_weights: dict[tuple, tuple[torch.Tensor, int]] = {}
        self.training = all(m.training for m in members)  # mirror the members, so restoring a mode keeps theirs

    def extra_repr(self) -> str:  # part of the model fingerprint: a different seed is a different ensemble
        profile = "" if self.profile == "paper" else f", profile={self.profile}"
        return f"seed={self.seed}, names={self.names}{profile}"

    def __repr__(self) -> str:  # the members' own structure is in their weights' fingerprint, not worth a page
        return f"MajorityVote(names={self.names}, seed={self.seed})"

    def __len__(self) -> int:
        return len(self.members)

    def with_seed(self, seed: int) -> MajorityVote:
        """The same members with another tie-break seed (members are shared, not copied)."""
        return MajorityVote(list(self.members), seed, self.names, self.profile)

    # -- decisions -----------------------------------------------------------------------------------
    def tiebreak(self, x: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Which member decides each image on a tie: a seeded hash of the image's 8-bit pixels, modulo N."""
        seed = self.seed if seed is None else int(seed)
        key = (seed, x[0].numel(), str(x.device))
        if key not in self._hash_weights:
            weights, offset = tiebreak_weights(seed, x[0].numel())
            self._hash_weights[key] = (weights.to(x.device), offset)
        weights, offset = self._hash_weights[key]
        return tiebreak_members(x, weights, offset, len(self.members))

    def decide(
        self, preds: torch.Tensor, x: torch.Tensor, seed: int | None = None, num_classes: int | None = None
    ) -> torch.Tensor:
        """The vote on images ``x`` from the members' predictions ``preds`` (N, B)."""
        return majority_vote(preds, self.tiebreak(x, seed), num_classes, self.ties)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits, stacked (N, B, classes)."""
        return torch.stack([m(x) for m in self.members]).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.member_logits(x)
        soft = torch.logsumexp(logits.log_softmax(dim=-1), dim=0) - math.log(len(self.members))
        decision = self.decide(logits.argmax(dim=-1), x, num_classes=logits.shape[-1])
        lift = soft.max(dim=1).values - soft.gather(1, decision.view(-1, 1)).squeeze(1) + 1e-4
        return soft + (F.one_hot(decision, soft.shape[1]) * lift.unsqueeze(1)).detach()

    @torch.inference_mode()
    def votes(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Every member's predicted class (N, B), batched, on x's device."""
        return torch.stack([predict(m, x, batch_size) for m in self.members])

    @torch.inference_mode()
    def expected_accuracy(self, x: torch.Tensor, y: torch.Tensor, draws: int | None = None) -> torch.Tensor:
        """Per image, the probability the vote is right, averaged over tie-break draws.

        ``draws=None``: the exact expectation (a tie is right with probability votes-for-y / N); ``draws=k``:
        the mean over k seeded draws (seeds ``seed`` .. ``seed + k - 1``).
        """
        preds = self.votes(x)
        y = y.to(preds.device)
        if draws is None:
            return expected_correct(preds, y, self.ties)
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise TrendError(f"The number of tie-break draws must be a whole number >= 1, got {draws!r}.")
        hits = [(self.decide(preds, x, self.seed + k) == y).float() for k in range(draws)]
        return torch.stack(hits).mean(dim=0)


def as_ensemble(
    models: MajorityVote | Sequence[nn.Module] | nn.Module, seed: int = 0, profile: str | None = None
) -> MajorityVote:
    """A MajorityVote as given (with ``profile``'s vote when one is named), or one built from a list of members
    (a single model is a one-member ensemble) under ``profile`` (default paper)."""
    if isinstance(models, MajorityVote):
        if profile is None or models.profile == profile:
            return models
        return MajorityVote(list(models.members), models.seed, models.names, profile)
    if isinstance(models, nn.Module):
        return MajorityVote([models], seed, profile=profile or "paper")
    try:
        members = list(models)
    except TypeError:
        raise TrendError(f"An ensemble is a MajorityVote or a list of models, got {type(models).__name__}.") from None
    return MajorityVote(members, seed, profile=profile or "paper")
