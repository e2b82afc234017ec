"""Ratio metrics (e.g. revenue per order): delta-method variance from per-unit sums."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stats import analyze_experiment
from analysis.stats.inputs import clean_stats
from analysis.stats.moments import Estimate, ratio_estimate

from .helpers import assert_json_safe, metric, suff, treatment


def _units(rng, n, aov=10.0, size=None):
    """Orders per unit (denominator) and revenue per unit (numerator), correlated."""
    shape = (n,) if size is None else (size, n)
    orders = rng.poisson(1.2, shape)
    revenue = orders * aov + rng.gamma(2.0, 2.0, shape) * orders
    return orders.astype(float), revenue


def test_ratio_variance_formula_from_raw_data():
    rng = np.random.default_rng(3)
    x, y = _units(rng, 3000)
    est = ratio_estimate(clean_stats(suff(y, x), "ratio", "v"))
    assert isinstance(est, Estimate)
    r = y.sum() / x.sum()
    cov = np.cov(x, y, ddof=1)
    expected = (cov[1, 1] - 2 * r * cov[0, 1] + r * r * cov[0, 0]) / (x.size * x.mean() ** 2)
    assert est.mean == pytest.approx(r)
    assert est.var_mean == pytest.approx(expected, rel=1e-9)
    # identical to the variance of the mean of the linearised per-unit values (y - R x)/xbar
    lin = (y - r * x) / x.mean()
    assert est.var_mean == pytest.approx(lin.var(ddof=1) / x.size, rel=1e-9)


def test_ratio_delta_variance_matches_monte_carlo():
    rng = np.random.default_rng(5)
    reps, n = 4000, 400
    x, y = _units(rng, n, size=reps)
    ratios = y.sum(axis=1) / x.sum(axis=1)
    emp_var = ratios.var(ddof=1)
    deltas = []
    for i in range(200):
        est = ratio_estimate(clean_stats(suff(y[i], x[i]), "ratio", "v"))
        deltas.append(est.var_mean)
    # Monte Carlo standard error of a variance with 4000 reps is ~2.2 %
    assert np.mean(deltas) == pytest.approx(emp_var, rel=0.07)


def test_ratio_comparison_and_interval_coverage():
    """95 % intervals for the ratio difference cover the truth ~95 % of the time (A/A)."""
    rng = np.random.default_rng(9)
    reps, n = 600, 300
    x0, y0 = _units(rng, n, size=reps)
    x1, y1 = _units(rng, n, size=reps)
    true_diff = 0.0
    covered = 0
    for i in range(reps):
        body = analyze_experiment(
            experiment="e",
            control="control",
            weights={"control": 1, "t": 1},
            metrics=[
                metric("aov", "ratio", {"control": suff(y0[i], x0[i]), "t": suff(y1[i], x1[i])})
            ],
        )
        v = treatment(body, "aov", "t")
        lo, hi = v["lift"]["ci_absolute"]
        covered += lo <= true_diff <= hi
    rate = covered / reps
    assert abs(rate - 0.95) < 3.5 * np.sqrt(0.95 * 0.05 / reps)


def test_ratio_output_fields_and_edge_cases():
    rng = np.random.default_rng(1)
    x, y = _units(rng, 50)
    no_orders = suff(np.zeros(20), np.zeros(20))
    body = analyze_experiment(
        experiment="e",
        control="control",
        weights={"control": 1, "t": 1, "u": 1},
        metrics=[
            metric("aov", "ratio", {"control": suff(y, x), "t": no_orders, "u": suff(y[:1], x[:1])})
        ],
    )
    assert_json_safe(body)
    v = treatment(body, "aov", "t")
    assert v["status"] == "insufficient_data" and "denominator" in v["reason"]
    assert treatment(body, "aov", "u")["status"] == "insufficient_data"
