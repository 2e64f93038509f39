"""TM(eps): the saturating fit recovers known constants from noisy counts; TM is a ratio; RMSE; bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import FP, Q2

from trend_core.attacks import PGD
from trend_core.errors import TrendError
from trend_core.experiments.curve import (
    default_fit_eps,
    fit_saturating,
    fit_tm,
    fit_tm_curve,
    measure_tm,
    saturating,
    tm_rmse,
)

EPS = np.linspace(0.02, 0.3, 10)


@pytest.mark.parametrize(
    "a,b,top,seed",
    [(3000.0, -15.0, 0.3, 0), (1200.0, -40.0, 0.3, 1), (800.0, -4.0, 0.3, 2), (5000.0, -150.0, 16 / 255, 3)],
)  # digits' and CIFAR's eps ranges
def test_fit_recovers_known_constants_from_noisy_counts(a, b, top, seed):
    rng = np.random.default_rng(seed)
    eps = np.linspace(top / 15, top, 10)
    counts = rng.poisson(saturating(eps, a, b))  # image counts: Poisson noise, as from a few thousand test images
    fit = fit_saturating(eps, counts)
    assert fit.a == pytest.approx(a, rel=0.05)
    assert fit.b == pytest.approx(b, rel=0.1)
    assert fit.rmse < 3 * np.sqrt(a) and not fit.unsaturated


def test_counts_that_never_bend_are_flagged():
    eps = np.linspace(0.02, 0.3, 6)
    fit = fit_saturating(eps, 100 * eps**2 / 0.09)  # convex: the exponential cannot bend that way
    assert fit.unsaturated and fit.b < 0


def test_tm_is_the_ratio_of_the_two_fits_and_rmse_counts_every_point():
    f_ss, f_st = saturating(EPS, 300, -15), saturating(EPS, 150, -6)
    curve = fit_tm_curve(EPS, f_st, f_ss)
    assert curve.st.a == pytest.approx(150, rel=1e-3) and curve.ss.b == pytest.approx(-15, rel=1e-3)
    dense = np.linspace(0.01, 0.5, 25)
    assert np.allclose(curve.tm(dense), saturating(dense, 150, -6) / saturating(dense, 300, -15), rtol=1e-3)
    assert curve.tm([0.0])[0] == pytest.approx((150 * -6) / (300 * -15), rel=1e-3)  # the limit at eps = 0
    predicted = curve.predict([0.1, 0.2])
    assert list(predicted.columns) == ["eps", "f_st", "f_ss", "tm"]
    measured = pd.DataFrame({"eps": [0.05, 0.1, 0.2, 0.3], "tm": [0.3, 0.4, np.nan, 0.5]})
    errors = curve.tm([0.05, 0.1, 0.3]) - np.array([0.3, 0.4, 0.5])
    assert tm_rmse(curve, measured) == pytest.approx(np.sqrt(np.mean(errors**2)))


def test_bad_points_and_failed_fits(monkeypatch):
    with pytest.raises(TrendError, match="at least 3 distinct eps"):
        fit_saturating([0.1, 0.2], [3, 5])
    with pytest.raises(TrendError, match="at least 3 distinct eps"):
        fit_saturating([0.1, 0.1, 0.2], [3, 4, 5])
    with pytest.raises(TrendError, match="3 eps values but 2"):
        fit_saturating([0.1, 0.2, 0.3], [3, 5])
    with pytest.raises(TrendError, match="positive"):
        fit_saturating([0.0, 0.2, 0.3], [0, 5, 6])
    with pytest.raises(TrendError, match="negative"):
        fit_saturating([0.1, 0.2, 0.3], [3, -5, 6])
    with pytest.raises(TrendError, match="no adversarial image"):
        fit_tm_curve([0.1, 0.2, 0.3], [0, 0, 0], [0, 0, 0])
    assert fit_saturating([0.1, 0.2, 0.3], [0, 0, 0]).a == 0.0  # nothing transferred: the zero curve

    def never_converges(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: The maximum number of function evaluations is exceeded.")

    monkeypatch.setattr("scipy.optimize.curve_fit", never_converges)
    with pytest.raises(TrendError, match="did not converge"):
        fit_saturating([0.1, 0.2, 0.3], [3, 5, 6], "f_st")


def test_default_fit_eps_spread_over_the_dataset_range():
    assert default_fit_eps("digits") == pytest.approx([0.02, 0.113333, 0.206667, 0.3], abs=1e-6)
    assert len(default_fit_eps("cifar10", 6)) == 6


def test_fit_tm_on_two_trained_models(zoo_model, digits):
    source, target = zoo_model(FP), zoo_model(Q2)
    data = digits.tensors("test", limit=40)
    attack = PGD(eps=0.1, steps=5, step_size=0.05)
    result = fit_tm(
        source, target, [0.05, 0.15, 0.3], eval_eps=[0.1], attack=attack, data=data, cache=None, device="cpu"
    )
    m = result.measured
    assert list(m["eps"]) == [0.05, 0.1, 0.15, 0.3] and list(m["used_in_fit"]) == [True, False, True, True]
    assert (m["f_st"] <= m["f_ss"]).all() and (m["f_ss"] <= m["n_common"]).all() and m["f_ss"].iloc[-1] > 0
    assert result.source == "FP-s0" and result.target == "Q2-s0"
    direct = measure_tm(source, target, [0.1], attack=attack, data=data, cache=None, device="cpu")
    assert direct.iloc[0]["f_ss"] == m.iloc[1]["f_ss"] and direct.iloc[0]["f_st"] == m.iloc[1]["f_st"]
    assert result.rmse == pytest.approx(tm_rmse(result.curve, m)) and 0 <= result.rmse <= 1
    assert result.predictions(11)["eps"].iloc[-1] == pytest.approx(0.3)
    with pytest.raises(TrendError, match="at least 3"):
        fit_tm(source, target, [0.1, 0.2], attack=attack, data=data, cache=None)
    with pytest.raises(TrendError, match="same model"):
        fit_tm(source, source, [0.1, 0.2, 0.3], attack=attack, data=data, cache=None)
