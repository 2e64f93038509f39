"""Progress in proportion to work done: a meter that turns units of work into the fraction a job or a bar shows.

A job function knows how much work lies ahead (rules x eps x images x steps, epochs of every model, eps points)
before it starts; it declares the total, reports each finished piece, and the meter calls
``report(fraction, message)`` — ``Job.progress`` for a background job, a tqdm bar's update for the CLI — so the
bar moves with the work and an estimate of the time left can be taken from its rate.
"""

from __future__ import annotations

from typing import Callable, Iterable

Report = Callable[[float | None, str | None], None]


class WorkMeter:
    """Counts finished units of work out of ``total`` and reports the fraction through ``report``."""

    def __init__(self, report: Report, total: float):
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


class StartTicker:
    """A ``progress(message)`` callback for work that announces each piece as it starts (``robustness_sweep``
    says when each attack starts): a call counts the piece under way as done (its weight the next of ``weights``)
    and says what starts now; ``finish()`` counts the last piece."""

    def __init__(self, work: WorkMeter, weights: Iterable[float]):
        self.work, self.weights = work, iter(weights)
        self.running: list[float] = []  # the weight of the piece under way

    def __call__(self, message: str) -> None:
        if self.running:
            self.work.done(self.running.pop(), message)
        else:
            self.work.start(message)
        self.running.append(next(self.weights, 1))

    def finish(self) -> None:
        self.work.done(self.running.pop() if self.running else 0)
