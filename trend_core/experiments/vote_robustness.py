"""A-GD against a majority vote at one eps, the paper's robustness measure of a TREND ensemble: the vote and each
member alone with per-image outcomes (for the verdict's intervals), and the curve as the ensemble grows."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pandas as pd

from trend_core.ensemble.selection import ENSEMBLE_LABEL
from trend_core.ensemble.verdict import accuracy_interval
from trend_core.experiments.ensemble_sweep import robustness_sweep
from trend_core.nn.vote import MajorityVote
from trend_core.runtime.progress import Progress
from trend_core.storage.store import Cache

GROWTH_COLUMNS = ["size", "members", "clean_accuracy", "accuracy", "ci_low", "ci_high", "eps"]


def agd_evaluation(
    vote: MajorityVote,
    eps: float,
    steps: int,
    members_alone: bool = True,
    data: Any = None,
    limit: int | None = None,
    seed: int = 0,
    cache: Cache = None,
    device: Any = "auto",
    profile: str = "paper",
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A-GD at ``eps`` (the default step size) against ``vote`` and, with ``members_alone``, each member alone
    (``cancel``: as in ``robustness_sweep``).

    Returns ``robustness_sweep``'s rows and the per-image outcomes: one column per attacked model, the vote
    (``ensemble``) first, each image's (expected) correctness under its attack."""
    outcomes: dict = {}
    sweep = robustness_sweep(
        vote,
        [eps],
        rules=["agd"],
        data=data,
        limit=limit,
        steps=steps,
        seed=seed,
        members_alone=members_alone,
        cache=cache,
        device=device,
        progress=progress,
        cancel=cancel,
        profile=profile,
        outcomes=outcomes,
    )
    per_image = pd.DataFrame({model: v for (rule, _, model), v in outcomes.items() if rule != "clean"})
    return sweep, per_image


def growth_curve(
    votes: Sequence[MajorityVote],
    eps: float,
    steps: int,
    data: Any = None,
    limit: int | None = None,
    seed: int = 0,
    cache: Cache = None,
    device: Any = "auto",
    profile: str = "paper",
    starting: Callable[[int, MajorityVote], None] | None = None,
) -> pd.DataFrame:
    """Clean accuracy and accuracy under A-GD at ``eps`` (with its 95% bootstrap interval over the images) of each
    vote in ``votes``, one row each in order: robustness as the ensemble grows (the paper's Fig. 9).
    ``starting(i, vote)`` is called before each vote is attacked (progress, cancellation)."""
    rows = []
    for i, vote in enumerate(votes):
        if starting is not None:
            starting(i, vote)
        sweep, per_image = agd_evaluation(
            vote,
            eps,
            steps,
            members_alone=False,
            data=data,
            limit=limit,
            seed=seed,
            cache=cache,
            device=device,
            profile=profile,
        )
        row = sweep[sweep["model"] == ENSEMBLE_LABEL].iloc[0]
        robust = accuracy_interval(per_image[ENSEMBLE_LABEL].to_numpy(float))
        rows.append(
            {
                "size": len(vote.names),
                "members": " + ".join(vote.names),
                "clean_accuracy": float(row["clean_accuracy"]),
                "accuracy": float(row["accuracy"]),
                "ci_low": robust.low,
                "ci_high": robust.high,
                "eps": eps,
            }
        )
    return pd.DataFrame(rows, columns=GROWTH_COLUMNS)
