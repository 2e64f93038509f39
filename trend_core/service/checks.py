"""Input checks every submitter shares: one TrendError sentence before anything runs."""

from __future__ import annotations

from typing import Sequence

from trend_core.attacks.base import check_eps, check_int
from trend_core.errors import TrendError


def check_epsilons(epsilons: Sequence[float]) -> list[float]:
    """Sorted distinct L-inf eps values, each in (0, 1]."""
    values = sorted({float(check_eps(e) or 0.0) for e in epsilons})  # (check_eps(required=True) never gives None)
    if not values:
        raise TrendError("Give at least one eps.")
    return values


def check_limit(limit: int | None) -> int | None:
    """The image limit: None (every test image) or a positive whole number."""
    return None if limit is None else check_int("The image limit", limit)
