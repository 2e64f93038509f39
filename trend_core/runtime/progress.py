"""Progress in proportion to work done: a meter that turns units of work into the fraction a job or a bar shows.

A job function knows how much work lies ahead (rules x eps x images x steps, epochs of every model, eps points)
before it starts; it declares the total, reports each finished piece, and the meter calls
``report(fraction, message)`` — ``Job.progress`` for a background job, a tqdm bar's update for the CLI — so the
bar moves with the work and an estimate of the time left can be taken from its rate.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[float | None, str | None], None]
"""The engine's one progress callback: ``progress(fraction, message)``, the fraction of the run's work done
(0..1) and what runs now; either may be None (unchanged). ``Job.progress`` and the CLI's bars have this shape,
so every runner's ``progress=`` takes either directly."""


def no_progress(fraction: float | None, message: str | None) -> None:
    """The ``Progress`` of a run nobody follows."""


class WorkMeter:
    """Counts finished units of work out of ``total`` and reports the fraction through ``report``."""

    def __init__(self, report: Progress, total: float):
        self.report = report
        self.total = max(float(total), 1e-12)
        self.finished = 0.0

    @property
    def fraction(self) -> float:
        return min(1.0, self.finished / self.total)

    def start(self, message: str) -> None:
        """Say what is being worked on now (the fraction stays where it is)."""
        self.report(self.fraction, message)

    def done(self, units: float, message: str | None = None) -> None:
        """``units`` more units are finished; ``message`` says what comes next (if given)."""
        self.finished += float(units)
        self.report(self.fraction, message)

    def part(self, units: float) -> Callable[[float, str | None], None]:
        """A callback for a sub-task worth ``units``: ``cb(f, message)`` reports it as ``f`` (0..1) done."""
        base = self.finished

        def report(fraction: float, message: str | None = None) -> None:
            self.report(min(1.0, (base + units * min(1.0, max(0.0, fraction))) / self.total), message)

        return report
