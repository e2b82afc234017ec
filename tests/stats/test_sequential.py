"""mSPRT always-valid p-values and confidence sequences (Johari et al. 2022)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from analysis.stats import analyze_experiment
from analysis.stats.sequential import (
    always_valid,
    msprt_halfwidth,
    msprt_pvalue,
    optimal_mixing_ratio,
)

from .helpers import assert_json_safe, conv, metric, suff, treatment


@pytest.mark.parametrize(
    ("d", "v", "tau2"),
    [(0.3, 0.01, 0.02), (-0.05, 0.001, 0.0005), (1.0, 2.0, 0.5), (0.0, 1.0, 1.0)],
)
def test_mixture_likelihood_ratio_against_numerical_integral(d, v, tau2):
    """Lambda = integral of N(d; theta, V)/N(d; 0, V) dN(theta; 0, tau^2)."""
    sd_t = np.sqrt(tau2)

    def integrand(theta):
        return (
            stats.norm.pdf(d, theta, np.sqrt(v))
            / stats.norm.pdf(d, 0, np.sqrt(v))
            * stats.norm.pdf(theta, 0, sd_t)
        )

    lam, _ = integrate.quad(integrand, -12 * sd_t, 12 * sd_t, points=[0.0, d], limit=200)
    assert float(msprt_pvalue(d, v, tau2)) == pytest.approx(min(1.0, 1.0 / lam), rel=1e-6)


def test_pvalue_and_confidence_sequence_agree():
    rng = np.random.default_rng(0)
    d = rng.normal(0, 1, 5000)
    v = rng.uniform(0.01, 1, 5000)
    tau2 = rng.uniform(0.01, 2, 5000)
    for alpha in (0.05, 0.1, 0.01):
        p = msprt_pvalue(d, v, tau2)
        half = msprt_halfwidth(v, tau2, alpha)
        excluded = np.abs(d) > half
        close = np.isclose(p, alpha, rtol=1e-9)
        assert np.array_equal((p < alpha)[~close], excluded[~close])
        # always wider than the fixed-horizon interval
        assert np.all(half > stats.norm.ppf(1 - alpha / 2) * np.sqrt(v))


def test_optimal_mixing_ratio_minimises_width():
    for alpha in (0.01, 0.05, 0.1):
        u = optimal_mixing_ratio(alpha)
        grid = np.exp(np.linspace(-3, 6, 20001))
        width = (1 + grid) / grid * (2 * np.log(1 / alpha) + np.log1p(grid))
        assert u == pytest.approx(grid[np.argmin(width)], rel=1e-3)


def test_always_valid_wrapper():
    p, half = always_valid(0.2, 0.01, 0.005, 0.05)
    u = optimal_mixing_ratio(0.05)
    assert float(p) == pytest.approx(float(msprt_pvalue(0.2, 0.01, u * 0.005)))
    assert float(half) == pytest.approx(float(msprt_halfwidth(0.01, u * 0.005, 0.05)))


def test_report_uses_always_valid_p_for_significance():
    rng = np.random.default_rng(5)
    y0, y1 = rng.normal(10, 3, 4000), rng.normal(10.2, 3, 4000)
    metrics = [
        metric("rev", "sum", {"control": suff(y0), "t": suff(y1)}),
        metric("c", "conversion", {"control": conv(4000, 400), "t": conv(4000, 450)}),
    ]
    kw = {
        "experiment": "e",
        "control": "control",
        "weights": {"control": 1, "t": 1},
        "metrics": metrics,
        "planned_sample_size": 8000,
    }
    fixed = analyze_experiment(**kw)
    seq = analyze_experiment(**kw, sequential=True)
    assert_json_safe(seq)
    assert seq["sequential"] is True
    for key in ("rev", "c"):
        f, s = treatment(fixed, key, "t"), treatment(seq, key, "t")
        assert f["inference"] == "fixed_horizon"  # the always-valid block is there, not the headline
        assert f["p_value"] == f["fixed_horizon"]["p_value"] != f["sequential"]["p_value"]
        assert f["sequential"]["ci_absolute"] == s["sequential"]["ci_absolute"]
        assert s["inference"] == "sequential"
        assert s["p_value"] == s["sequential"]["p_value"]
        assert s["p_value"] >= f["p_value"]  # always-valid p-values are more conservative
        assert s["lift"]["ci_absolute"] == s["sequential"]["ci_absolute"]
        fw = f["lift"]["ci_absolute"][1] - f["lift"]["ci_absolute"][0]
        sw = s["lift"]["ci_absolute"][1] - s["lift"]["ci_absolute"][0]
        assert sw > fw
        assert s["fixed_horizon"]["p_value"] == pytest.approx(f["p_value"])
        assert s["significant"] == (s["p_value_adjusted"] < 0.05)
    # fixed-horizon calls revenue significant (p ~ 0.03); the always-valid p-value does not yet
    assert treatment(fixed, "rev", "t")["p_value"] < 0.05
    assert treatment(seq, "rev", "t")["significant"] is False
