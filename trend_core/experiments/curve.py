"""TM as a function of attack strength: fit f_st and f_ss from a few eps, predict TM(eps).

    f_st(eps) = a  (1 - exp(b  eps)),   f_ss(eps) = a' (1 - exp(b' eps)),   TM(eps) = f_st(eps) / f_ss(eps)

Each count is fitted with scipy's ``curve_fit`` (b bounded negative: a rising, saturating curve) from >= 3
measured eps; TM is their true ratio (the original code multiplied), and the fit is judged by the RMSE of
predicted against measured TM at every measured eps (the paper's Table VII).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch.nn as nn

from trend_core.config.datasets import get_info
from trend_core.config.profiles import get_profile
from trend_core.errors import TrendError
from trend_core.experiments.transfer import run_transfer
from trend_core.runtime.options import RunOptions, run_options
from trend_core.runtime.progress import WorkMeter

MIN_POINTS = 3
DEFAULT_FIT_POINTS = 4


def saturating(eps, a: float, b: float):
    """a (1 - exp(b eps)): 0 at eps = 0, rising to a when b < 0."""
    return a * (1.0 - np.exp(b * np.asarray(eps, dtype=float)))


def saturating_jacobian(eps, a: float, b: float) -> np.ndarray:
    """The derivatives of ``saturating`` by a and by b at each eps (columns): the fit needs no finite differences,
    three times fewer evaluations (the bootstrap of finding 8 refits some 800 times)."""
    e = np.asarray(eps, dtype=float)
    grow = np.exp(b * e)
    return np.stack([1.0 - grow, -a * e * grow], axis=-1)


@dataclass(frozen=True)
class SaturatingFit:
    """Fitted constants of a (1 - exp(b eps)) and the fit's RMSE on the counts it was fitted to."""

    a: float
    b: float
    rmse: float = 0.0
    unsaturated: bool = False  # the counts did not bend over the range: a hit its bound, the fit is ~ a line

    def __call__(self, eps) -> np.ndarray:
        return saturating(eps, self.a, self.b)


def fit_saturating(
    eps: Sequence[float], counts: Sequence[float], what: str = "counts", start: SaturatingFit | None = None
) -> SaturatingFit:
    """Least-squares fit of a (1 - exp(b eps)) with a >= 0, b < 0, from several starting points (or from ``start``
    alone, e.g. the fit of the full sample when refitting bootstrap resamples; the several points if that fails).

    eps is rescaled to [0, 1] for the optimizer (b is scaled back), so the fit is equally conditioned for CIFAR's
    eps ~ 0.03 and the digits' eps ~ 0.3. Raises TrendError with a clear message on bad input or no convergence.
    """
    e, c = _check_points(eps, counts, what)
    if not np.any(c > 0):
        return SaturatingFit(0.0, -1.0 / float(e.max()), 0.0)  # nothing counted: the flat zero curve
    scale = float(e.max())
    u = e / scale
    top = float(c.max())
    a_upper = 1e3 * top
    guesses = []
    if start is not None and start.a > 0:  # tried alone first; the usual starting points only if it fails
        warm = [(min(start.a, 0.99 * a_upper), float(np.clip(start.b * scale, -999.0, -2e-6)))]
        best, best_sse, _ = _least_squares(u, c, warm, a_upper)
        if best is not None:
            return SaturatingFit(
                float(best[0]), float(best[1]) / scale, math.sqrt(best_sse / len(c)), best[0] >= 0.99 * a_upper
            )
    for a0 in (1.05 * top, 1.5 * top, 3.0 * top):
        ratio = np.clip(c / a0, 0.0, 0.99)
        est = np.log1p(-ratio[u > 0]) / u[u > 0]
        b_data = float(np.median(est)) if est.size else -3.0
        for b0 in {min(b_data, -1e-3), -1.0, -3.0, -10.0}:
            guesses.append((a0, float(np.clip(b0, -999.0, -2e-6))))
    best, best_sse, last_error = _least_squares(u, c, guesses, a_upper)
    if best is None:
        raise TrendError(
            f"The fit of {what}(eps) did not converge ({last_error or 'no finite solution'}); "
            "measure more eps values or a wider eps range."
        )
    a, b_unit = float(best[0]), float(best[1])
    return SaturatingFit(a, b_unit / scale, math.sqrt(best_sse / len(c)), unsaturated=a >= 0.99 * a_upper)


def _least_squares(u: np.ndarray, c: np.ndarray, guesses: list, a_upper: float) -> tuple:
    """The best bounded least-squares fit of ``saturating`` over the starting points: (params, sse, last error)."""
    from scipy.optimize import OptimizeWarning, curve_fit  # (scipy loads only for a fit: ~0.3 s)

    best, best_sse, last_error = None, math.inf, ""
    for p0 in guesses:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                params, _ = curve_fit(
                    saturating,
                    u,
                    c,
                    p0=p0,
                    bounds=([0.0, -1e3], [a_upper, -1e-6]),
                    jac=saturating_jacobian,
                    maxfev=5000,
                )
        except (RuntimeError, ValueError) as exc:
            last_error = str(exc).splitlines()[0]
            continue
        if not np.all(np.isfinite(params)):
            continue
        sse = float(np.sum((saturating(u, *params) - c) ** 2))
        if sse < best_sse:
            best, best_sse = params, sse
    return best, best_sse, last_error


def _check_points(eps, counts, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        e = np.asarray(eps, dtype=float).ravel()
        c = np.asarray(counts, dtype=float).ravel()
    except (TypeError, ValueError):
        raise TrendError(f"eps and {what} must be numbers.") from None
    if e.size != c.size:
        raise TrendError(f"Got {e.size} eps values but {c.size} {what}.")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(c))):
        raise TrendError(f"eps and {what} must be finite numbers.")
    if np.unique(e).size < MIN_POINTS:
        raise TrendError(
            f"Fitting {what}(eps) needs at least {MIN_POINTS} distinct eps values, got {np.unique(e).size}."
        )
    if np.any(e <= 0):
        raise TrendError(f"eps values must be positive, got {e.min():g}.")
    if np.any(c < 0):
        raise TrendError(f"{what} are counts and cannot be negative.")
    return e, c


@dataclass
class TMCurve:
    """The fitted f_st and f_ss curves and TM(eps) = f_st / f_ss."""

    st: SaturatingFit
    ss: SaturatingFit
    fit_eps: tuple[float, ...] = ()

    def tm(self, eps) -> np.ndarray:
        """TM at ``eps`` (at eps = 0 the limit (a b) / (a' b'))."""
        e = np.asarray(eps, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.st(e) / self.ss(e)
            limit = (self.st.a * self.st.b) / (self.ss.a * self.ss.b) if self.ss.a > 0 else math.nan
        return np.where(e == 0, limit, ratio)

    def predict(self, eps: Sequence[float]) -> pd.DataFrame:
        """Columns eps, f_st, f_ss, tm over ``eps`` (for ``plots.curve.tm_curve_figure``)."""
        e = np.asarray(eps, dtype=float)
        return pd.DataFrame({"eps": e, "f_st": self.st(e), "f_ss": self.ss(e), "tm": self.tm(e)})

    def params(self) -> dict:
        return {"a_st": self.st.a, "b_st": self.st.b, "a_ss": self.ss.a, "b_ss": self.ss.b}


def fit_tm_curve(
    eps: Sequence[float], f_st: Sequence[float], f_ss: Sequence[float], start: TMCurve | None = None
) -> TMCurve:
    """Fit both counts from the same eps values (>= 3) and return the TM(eps) curve (``start``: a curve whose
    constants start the optimizer, e.g. the full sample's when refitting resamples)."""
    if not np.any(np.asarray(f_ss, dtype=float) > 0):
        raise TrendError(
            "The source produced no adversarial image at any of these eps, so TM(eps) is undefined; "
            "use larger eps values."
        )
    return TMCurve(
        fit_saturating(eps, f_st, "f_st", start.st if start else None),
        fit_saturating(eps, f_ss, "f_ss", start.ss if start else None),
        tuple(float(e) for e in eps),
    )


def tm_rmse(curve: TMCurve, measured: pd.DataFrame) -> float:
    """RMSE of predicted against measured TM over every measured eps with a defined TM."""
    points = measured.dropna(subset=["tm"])
    if points.empty:
        return math.nan
    return float(np.sqrt(np.mean((curve.tm(points["eps"].to_numpy(float)) - points["tm"].to_numpy(float)) ** 2)))


@dataclass
class TMFitResult:
    """A TM(eps) fit for one (source, target) pair and the measurements behind it."""

    source: str
    target: str
    attack: str
    curve: TMCurve
    measured: pd.DataFrame  # eps, f_st, f_ss, tm, n_common, used_in_fit
    rmse: float
    max_abs_error: float
    warnings: list[str] = field(default_factory=list)

    def predictions(self, points: int = 60, eps_max: float | None = None) -> pd.DataFrame:
        """The fitted curves on a dense eps grid from 0 to ``eps_max`` (default: the largest measured eps)."""
        top = float(eps_max or self.measured["eps"].max())
        return self.curve.predict(list(np.linspace(0.0, top, max(2, int(points)))))

    def summary(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "attack": self.attack,
            **self.curve.params(),
            "fit_eps": list(self.curve.fit_eps),
            "measured_points": int(self.measured["tm"].notna().sum()),
            "rmse": self.rmse,
            "max_abs_error": self.max_abs_error,
        }

    def to_dict(self) -> dict:
        return {**self.summary(), "measured": self.measured.to_dict(orient="records"), "warnings": self.warnings}


def default_fit_eps(dataset: str, points: int = DEFAULT_FIT_POINTS, profile: str = "paper") -> list[float]:
    """``points`` eps values spread evenly over the dataset's eps range (the paper: 4); under the ``authors``
    profile their script's 0.02, 0.04, 0.06, 0.08."""
    fixed = get_profile(profile).tm_fit_eps
    if fixed is not None:
        return list(fixed)
    low, high = get_info(dataset).eps_range
    return [float(v) for v in np.round(np.linspace(low, high, int(points)), 6)]


def measure_tm(
    source: nn.Module,
    target: nn.Module,
    epsilons: Sequence[float],
    attack: Any = "pgd",
    *,
    data: Any = None,
    options: RunOptions | None = None,
    **keywords: Any,
) -> pd.DataFrame:
    """f_ss, f_st and TM of one pair at each eps, from a transfer run over the two models (``data`` and
    ``options`` or its fields as keywords as in ``run_transfer``).

    f_ss counts the source's adversarial images among those both models classify correctly (paper profile) or,
    as the authors' fit script does, among all the source classifies correctly (authors); TM = f_st / f_ss.
    """
    opts = run_options(options, keywords, "measure_tm")
    eps_list = sorted({float(e) for e in epsilons})
    if not eps_list:
        raise TrendError("Give at least one eps.")
    own_total = get_profile(opts.profile).tm_f_ss == "source"
    results = run_transfer(
        [source, target],
        attack,
        data=data,
        sources=[0],
        targets=[0, 1] if own_total else [1],
        epsilons=eps_list,
        options=opts,
    )
    rows = []
    for result in results:
        long = result.long()
        pair = long.iloc[-1]  # source -> target
        f_ss = int(long.iloc[0]["generated"]) if own_total else int(pair["generated"])  # iloc[0]: source -> source
        f_st = int(pair["transferred"])
        rows.append(
            {
                "eps": float(result.eps or 0.0),
                "f_st": f_st,
                "f_ss": f_ss,
                "tm": f_st / f_ss if f_ss else math.nan,
                "n_common": int(pair["n_common"]),
            }
        )
    frame = pd.DataFrame(rows)
    frame.attrs["source"], frame.attrs["target"] = results[0].sources[0], results[0].targets[0]
    frame.attrs["attack"] = results[0].attack
    return frame


def fit_tm(
    source: nn.Module,
    target: nn.Module,
    fit_eps: Sequence[float] | None = None,
    eval_eps: Sequence[float] = (),
    attack: Any = "pgd",
    *,
    data: Any = None,
    options: RunOptions | None = None,
    **keywords: Any,
) -> TMFitResult:
    """Measure the pair at ``fit_eps`` (default: the profile's, see ``default_fit_eps``) and ``eval_eps``, fit on
    ``fit_eps``, and report the RMSE of the fitted TM against every measured point. ``data`` and ``options``
    (or its fields as keywords) as in ``run_transfer`` (cache None: nothing is written to disk). ``profile``
    also decides what f_ss counts (see ``measure_tm``); TM is always the ratio f_st / f_ss."""
    opts = run_options(options, keywords, "fit_tm")
    profile, progress = opts.profile, opts.progress
    if source is target:
        raise TrendError("Source and target are the same model; TM(eps) is 1 by definition.")
    if fit_eps is None:
        dataset = getattr(getattr(source, "spec", None), "dataset", None)
        if dataset is None:
            raise TrendError("The source carries no dataset spec; give the fit's eps values.")
        fit_eps = default_fit_eps(dataset, profile=profile)
    fit_list = sorted({float(e) for e in fit_eps})
    if len(fit_list) < MIN_POINTS:
        raise TrendError(f"The TM(eps) fit needs at least {MIN_POINTS} distinct eps values, got {len(fit_list)}.")
    if progress is not None:
        progress(0.0, f"measuring {len(set(fit_list) | {float(e) for e in eval_eps})} eps values")
    measured = measure_tm(source, target, [*fit_list, *eval_eps], attack, data=data, options=opts)
    used = np.isin(np.round(measured["eps"].to_numpy(float), 10), np.round(fit_list, 10))
    measured["used_in_fit"] = used
    fit_rows = measured[used]
    curve = fit_tm_curve(fit_rows["eps"], fit_rows["f_st"], fit_rows["f_ss"])
    notes = [
        f"TM is undefined at eps {e:g}: the source produced no adversarial image there."
        for e in measured.loc[measured["f_ss"] == 0, "eps"]
    ]
    notes += [
        f"{name}(eps) does not saturate over the fit's eps (it grows like a straight line or faster), so "
        "a (1 - exp(b eps)) fits it poorly; its constants sit at the fit's bounds."
        for name, fit in (("f_st", curve.st), ("f_ss", curve.ss))
        if fit.unsaturated
    ]
    errors = curve.tm(measured["eps"].to_numpy(float)) - measured["tm"].to_numpy(float)
    errors = errors[np.isfinite(errors)]
    return TMFitResult(
        measured.attrs.get("source", "source"),
        measured.attrs.get("target", "target"),
        measured.attrs.get("attack", ""),
        curve,
        measured,
        tm_rmse(curve, measured),
        float(np.abs(errors).max()) if errors.size else math.nan,
        notes,
    )


def fit_tm_stepwise(
    source: nn.Module,
    target: nn.Module,
    fit_eps: Sequence[float],
    eval_eps: Sequence[float] = (),
    attack: Any = "pgd",
    *,
    data: Any = None,
    options: RunOptions | None = None,
    **keywords: Any,
) -> TMFitResult:
    """``fit_tm`` measured one eps at a time (each a PGD run of equal cost) so ``progress(fraction, message)``
    moves per point; the fit then finds every point in the cache (give one: a MemoryStore at least) and only
    solves the two small least-squares problems. What the dashboard's TM(eps) job and `trend fit-tm` run."""
    opts = run_options(options, keywords, "fit_tm_stepwise")
    quiet = dataclasses.replace(opts, progress=None)
    points = sorted({float(e) for e in [*fit_eps, *eval_eps]})
    work = WorkMeter(opts.progress or (lambda fraction, message: None), len(points) + 0.05)
    for i, eps in enumerate(points):
        work.start(f"measuring TM at eps {eps:g} ({i + 1}/{len(points)} points)")
        measure_tm(source, target, [eps], attack, data=data, options=quiet)
        work.done(1)
    work.start(f"fitting f_st and f_ss to {len({float(e) for e in fit_eps})} points")
    result = fit_tm(source, target, fit_eps, eval_eps, attack, data=data, options=quiet)
    work.done(0.05)
    return result
