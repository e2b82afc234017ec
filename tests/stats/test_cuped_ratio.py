"""CUPED for ratio metrics: theta and adjusted ratios against a unit-level regression
(statsmodels), variance reduction, and unbiasedness and coverage by simulation (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from analysis.stats import VariantStats, analyze_experiment
from analysis.stats.cuped import variance_reduction
from analysis.stats.cuped_ratio import fit_cuped_ratio
from analysis.stats.frequentist import z_critical
from analysis.stats.inputs import clean_stats

from .helpers import assert_json_safe, metric, treatment


def ratio_stats(y, x, yp, xp) -> VariantStats:
    """The sums the SQL produces for a ratio metric with CUPED on."""
    y, x, yp, xp = (np.asarray(v, dtype=float) for v in (y, x, yp, xp))
    s = lambda v: float(v.sum())  # noqa: E731
    return VariantStats(
        n=y.size, sum=s(y), sum_sq=s(y * y), den_sum=s(x), den_sum_sq=s(x * x), cross_sum=s(x * y),
        pre_sum=s(yp), pre_sum_sq=s(yp * yp), pre_cross=s(yp * y),
        pre_den_sum=s(xp), pre_den_sum_sq=s(xp * xp), pre_num_den=s(yp * xp), pre_num_x_den=s(yp * x),
        pre_den_x_num=s(xp * y), pre_den_x_den=s(xp * x),
    )


def units(rng, n, effect=0.0):
    """Revenue per order: each unit's spend level carries over from the pre-period."""
    level = rng.gamma(2.0, 10.0, n)
    xp = rng.poisson(2.0, n) + 1.0
    yp = xp * level * rng.lognormal(0, 0.3, n)
    x = rng.poisson(2.0, n) + 1.0
    y = x * level * rng.lognormal(0, 0.3, n) * (1.0 + effect)
    return y, x, yp, xp


def test_theta_and_adjusted_ratios_match_a_unit_level_regression():
    rng = np.random.default_rng(1)
    arms = {"c": units(rng, 2000), "t": units(rng, 2500, 0.05), "u": units(rng, 1500, -0.02)}
    fit = fit_cuped_ratio({k: clean_stats(ratio_stats(*v), "ratio", k) for k, v in arms.items()})
    assert not isinstance(fit, str)
    # Linearise each arm by the delta method and regress a on b with one intercept per arm.
    a_all, b_all, arm = [], [], []
    for i, (y, x, yp, xp) in enumerate(arms.values()):
        r, rp = y.sum() / x.sum(), yp.sum() / xp.sum()
        a_all.append((y - r * x) / x.mean())
        b_all.append((yp - rp * xp) / xp.mean())
        arm.append(np.full(y.size, i))
    a, b, arm = np.concatenate(a_all), np.concatenate(b_all), np.concatenate(arm)
    design = np.column_stack([b, arm == 1, arm == 2, np.ones_like(b)]).astype(float)
    theta = sm.OLS(a, design).fit().params[0]
    assert fit.theta == pytest.approx(theta, rel=1e-9)
    pooled = sum(v[2].sum() for v in arms.values()) / sum(v[3].sum() for v in arms.values())
    assert fit.pre_mean == pytest.approx(pooled)
    for i, (key, (y, x, yp, xp)) in enumerate(arms.items()):
        r, rp = y.sum() / x.sum(), yp.sum() / xp.sum()
        est = fit.estimates[key]
        assert est.mean == pytest.approx(r - theta * (rp - pooled), rel=1e-12)
        assert est.unit_var == pytest.approx(np.var(a_all[i] - theta * b_all[i], ddof=1), rel=1e-9)
        assert fit.raw[key].unit_var == pytest.approx(np.var(a_all[i], ddof=1), rel=1e-9)


def test_report_applies_it_and_reports_the_variance_reduction():
    rng = np.random.default_rng(2)
    arms = {"control": units(rng, 3000), "t": units(rng, 3000, 0.05)}
    body = analyze_experiment(experiment="e", control="control", weights={"control": 1, "t": 1},
                              metrics=[metric("aov", "ratio", {k: ratio_stats(*v) for k, v in arms.items()})])
    assert_json_safe(body)
    v = treatment(body, "aov", "t")
    assert v["estimator"] == "cuped" and v["cuped"]["applied"] is True
    assert v["cuped"]["variance_reduction"] > 0.3
    width = v["lift"]["ci_absolute"][1] - v["lift"]["ci_absolute"][0]
    raw = v["unadjusted"]["ci_absolute"][1] - v["unadjusted"]["ci_absolute"][0]
    assert width < 0.85 * raw
    fit = fit_cuped_ratio({k: clean_stats(ratio_stats(*a), "ratio", k) for k, a in arms.items()})
    assert v["cuped"]["variance_reduction"] == pytest.approx(variance_reduction(fit, "t", "control"))
    # CUPED off: unadjusted, and the reason is given
    off = analyze_experiment(experiment="e", control="control", weights={"control": 1, "t": 1}, cuped=False,
                             metrics=[metric("aov", "ratio", {k: ratio_stats(*v) for k, v in arms.items()})])
    assert treatment(off, "aov", "t")["estimator"] == "unadjusted"


def test_unbiased_with_smaller_variance_and_nominal_coverage_by_simulation():
    rng = np.random.default_rng(3)
    reps, n, effect = 400, 600, 0.05
    z = z_critical(0.05)
    adj, raw, covered = [], [], 0
    truth = 2.0 * 10.0 * np.exp(0.3**2 / 2) * effect  # E[level] E[noise] x effect
    for _ in range(reps):
        arms = {"c": units(rng, n), "t": units(rng, n, effect)}
        fit = fit_cuped_ratio({k: clean_stats(ratio_stats(*v), "ratio", k) for k, v in arms.items()})
        assert not isinstance(fit, str)
        d = fit.estimates["t"].mean - fit.estimates["c"].mean
        se = np.sqrt(fit.estimates["t"].var_mean + fit.estimates["c"].var_mean)
        adj.append(d)
        raw.append(fit.raw["t"].mean - fit.raw["c"].mean)
        covered += abs(d - truth) <= z * se
    adj, raw = np.array(adj), np.array(raw)
    assert abs(adj.mean() - truth) < 3 * adj.std() / np.sqrt(reps)  # unbiased
    assert adj.var() < 0.7 * raw.var()  # and less noisy than the plain delta-method ratio
    assert 0.92 <= covered / reps <= 0.975


def test_not_applied_cases_say_why():
    rng = np.random.default_rng(4)
    y, x, yp, xp = units(rng, 200)
    no_pre_orders = ratio_stats(y, x, np.zeros(200), np.zeros(200))
    fit = fit_cuped_ratio({k: clean_stats(no_pre_orders, "ratio", k) for k in ("c", "t")})
    assert fit == "the pre-period denominator is zero in a variant (e.g. no orders before exposure)"
    constant = ratio_stats(y, x, xp * 5.0, xp)  # every unit's pre-period ratio is 5
    assert fit_cuped_ratio({k: clean_stats(constant, "ratio", k) for k in ("c", "t")}) == (
        "the pre-period ratio does not vary between units")
    plain = VariantStats(n=200, sum=float(y.sum()), sum_sq=float((y * y).sum()), den_sum=float(x.sum()),
                         den_sum_sq=float((x * x).sum()), cross_sum=float((x * y).sum()))
    assert fit_cuped_ratio({k: clean_stats(plain, "ratio", k) for k in ("c", "t")}) == "no pre-period data"
