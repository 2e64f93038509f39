"""Export a chosen ensemble as one file a defender deploys without this project: a ``torch.export`` program of
the majority vote over its members, each with its own preprocessing (pixels in [0, 1] -> logits whose argmax
is the vote, tie-breaks included). ``export_ensemble`` checks the written file by loading it back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from trend_core.errors import TrendError
from trend_core.models.exported import load_program, save_program
from trend_core.nn.vote import MajorityVote, majority_vote, tiebreak_members, tiebreak_weights


class DeployableVote(nn.Module):
    """A MajorityVote reduced to what runs in deployment for one image shape: the members and the vote's
    pixel-hash tie-break as buffers (no Python state), so ``torch.export`` can trace it."""

    def __init__(self, vote: MajorityVote, image_shape: tuple[int, ...]):
        super().__init__()
        self.members = nn.ModuleList(list(vote.members))
        weights, offset = tiebreak_weights(vote.seed, int(torch.Size(image_shape).numel()))
        self.register_buffer("hash_weights", weights)
        self.offset = offset
        self.ties = vote.ties

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([m(x) for m in self.members]).float()
        soft = torch.logsumexp(logits.log_softmax(dim=-1), dim=0) - torch.log(torch.tensor(float(len(self.members))))
        weights = cast(torch.Tensor, self.hash_weights)  # (a registered buffer)
        tiebreak = tiebreak_members(x, weights, self.offset, len(self.members))
        decision = majority_vote(logits.argmax(dim=-1), tiebreak, logits.shape[-1], self.ties)
        lift = soft.max(dim=1).values - soft.gather(1, decision.view(-1, 1)).squeeze(1) + 1e-4
        return soft + F.one_hot(decision, soft.shape[1]) * lift.unsqueeze(1)


def export_ensemble(vote: MajorityVote, images: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write ``vote`` as a ``.pt2`` program for images shaped like ``images`` (N, C, H, W in [0, 1]), then load
    the file back and check that it votes exactly as ``vote`` does on ``images``: a TrendError otherwise."""
    if images.dim() != 4 or images.shape[0] < 1:
        raise TrendError("Give at least one example image batch shaped (N, C, H, W) to export an ensemble.")
    device = next((p.device for p in vote.parameters()), torch.device("cpu"))
    images = images.to(device)
    deployable = DeployableVote(vote.eval(), tuple(images.shape[1:])).eval()
    path = save_program(deployable, images[:2], path)
    with torch.no_grad():
        expected = vote.decide(vote.votes(images), images, num_classes=None)
        got = load_program(path)(images).argmax(dim=1)
    if not torch.equal(got.cpu(), expected.cpu()):
        path.unlink(missing_ok=True)
        raise TrendError(
            f"The exported ensemble disagreed with the vote on {int((got.cpu() != expected.cpu()).sum())} of "
            f"{len(images)} images, so no file was kept; please report this ensemble."
        )
    return path
