"""The eps values a sweep runs at, decided from what a user set (a range and a count): the same rule for the
dashboard's pages and anyone else who asks, so a page holds widgets only."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from trend_core.config.datasets import get_info


def spaced_eps(low: float, high: float, points: int, step: float) -> list[float]:
    """``points`` eps evenly from ``low`` to ``high``, each rounded onto a grid of ``step`` (0.115, not 0.11333),
    duplicates dropped, sorted."""
    spaced = np.round(np.linspace(low, high, int(points)) / step) * step
    return sorted({round(float(v), 6) for v in spaced})


def measured_eps(dataset: str, fit_eps: Sequence[float], points: int) -> list[float]:
    """The denser sweep a TM(eps) fit is checked against: ``points`` eps evenly over the dataset's eps range
    (stretched to the largest fit eps), three significant digits (0.0455, not 0.045455), zero dropped."""
    low, high = get_info(dataset).eps_range
    top = max([high, *fit_eps])
    spaced = np.linspace(low, top, points) if points else np.array([])
    return sorted({float(f"{v:.3g}") for v in spaced if v > 0})
