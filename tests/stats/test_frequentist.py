"""Welch t-test, two-proportion z-test and delta-method relative lift vs scipy/statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from analysis.stats import analyze_experiment
from analysis.stats.frequentist import proportions_ztest_pooled, relative_lift, welch_ttest

from .helpers import assert_json_safe, conv, metric, suff, treatment

W = {"control": 1, "t": 1}


def _run(m, **kw):
    body = analyze_experiment(
        experiment="e", control="control", weights=W, metrics=[m], cuped=False, **kw
    )
    assert_json_safe(body)
    return treatment(body, m.key, "t")


@pytest.mark.parametrize(
    ("n1", "n0", "mu1", "mu0", "sd1", "sd0"),
    [
        (10, 10, 1.0, 0.0, 1.0, 3.0),
        (37, 5000, 5.0, 5.2, 2.0, 1.0),
        (100_000, 90_000, 3.01, 3.0, 1.0, 1.5),
    ],
)
def test_welch_matches_scipy_raw_data(n1, n0, mu1, mu0, sd1, sd0):
    rng = np.random.default_rng(7)
    y1 = rng.normal(mu1, sd1, n1)
    y0 = rng.normal(mu0, sd0, n0)
    v = _run(metric("m", "sum", {"control": suff(y0), "t": suff(y1)}))
    ref = stats.ttest_ind(y1, y0, equal_var=False)
    assert v["p_value"] == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)
    assert v["fixed_horizon"]["df"] == pytest.approx(ref.df, rel=1e-8)
    ci = ref.confidence_interval(0.95)
    assert v["lift"]["ci_absolute"] == pytest.approx([ci.low, ci.high], rel=1e-8)
    assert v["lift"]["absolute"] == pytest.approx(y1.mean() - y0.mean(), rel=1e-9)
    assert v["mean"] == pytest.approx(y1.mean())
    assert v["sd"] == pytest.approx(y1.std(ddof=1))
    assert v["test"] == "welch_t"


def test_welch_matches_ttest_ind_from_stats_including_10_million_units():
    cases = [
        (10, 1.3, 0.4, 10, 1.0, 0.9),
        (10_000_000, 2.0001, 1.0, 10_000_000, 2.0, 1.0),
        (10_000_000, 5.0, 3.0, 10, 4.0, 0.5),
    ]
    for n1, m1, s1, n0, m0, s0 in cases:
        t, df, p = welch_ttest(m1, s1**2, n1, m0, s0**2, n0)
        ref = stats.ttest_ind_from_stats(m1, s1, n1, m0, s0, n0, equal_var=False)
        assert float(t) == pytest.approx(ref.statistic, rel=1e-10)
        assert float(p) == pytest.approx(ref.pvalue, rel=1e-8)
        # and through the full pipeline, from sums
        vs = lambda n, m, s: suff_from_moments(n, m, s)  # noqa: E731
        v = _run(metric("m", "count", {"control": vs(n0, m0, s0), "t": vs(n1, m1, s1)}))
        assert v["p_value"] == pytest.approx(ref.pvalue, rel=1e-6)


def suff_from_moments(n, mean, sd):
    from analysis.stats import VariantStats

    s = n * mean
    return VariantStats(n=n, sum=s, sum_sq=(n - 1) * sd**2 + s * s / n)


@pytest.mark.parametrize(
    ("c1", "n1", "c0", "n0"),
    [
        (564, 4988, 506, 5012),
        (30, 100, 12, 100),
        (1_020_000, 10_000_000, 1_000_000, 10_000_000),
    ],
)
def test_conversion_matches_statsmodels(c1, n1, c0, n0):
    v = _run(metric("c", "conversion", {"control": conv(n0, c0), "t": conv(n1, c1)}))
    z, p = proportions_ztest([c1, c0], [n1, n0])  # pooled variance
    assert v["p_value"] == pytest.approx(p, rel=1e-9)
    assert float(proportions_ztest_pooled(c1, n1, c0, n0)[0]) == pytest.approx(z, rel=1e-12)
    lo, hi = confint_proportions_2indep(c1, n1, c0, n0, method="wald", compare="diff", alpha=0.05)
    assert v["lift"]["ci_absolute"] == pytest.approx([lo, hi], rel=1e-9)
    assert v["test"] == "two_proportion_z"
    assert v["lift"]["absolute"] == pytest.approx(c1 / n1 - c0 / n0)
    assert v["lift"]["relative"] == pytest.approx((c1 / n1) / (c0 / n0) - 1)


def test_alpha_is_per_experiment():
    m = metric("c", "conversion", {"control": conv(5012, 506), "t": conv(4988, 564)})
    v = _run(m, alpha=0.10)
    lo, hi = confint_proportions_2indep(
        564, 4988, 506, 5012, method="wald", compare="diff", alpha=0.10
    )
    assert v["lift"]["ci_absolute"] == pytest.approx([lo, hi], rel=1e-9)
    assert v["significant"] is True  # p = 0.050 < 0.10
    assert _run(m)["significant"] is False


def test_relative_lift_delta_formula():
    m1, m0, s1, s0, n1, n0 = 1.1, 1.0, 2.0, 1.5, 400, 500
    r, se = relative_lift(m1, s1**2 / n1, m0, s0**2 / n0)
    assert float(r) == pytest.approx(0.1)
    assert float(se) ** 2 == pytest.approx(s1**2 / (n1 * m0**2) + s0**2 * m1**2 / (n0 * m0**4))


def test_relative_lift_ci_delta_method_monte_carlo():
    """The delta-method SE of m1/m0 - 1 matches the spread of the ratio over repeated samples."""
    rng = np.random.default_rng(11)
    n1, n0, mu1, mu0, sd = 2000, 2000, 10.5, 10.0, 8.0
    reps = 20_000
    m1 = rng.normal(mu1, sd / np.sqrt(n1), reps)
    m0 = rng.normal(mu0, sd / np.sqrt(n0), reps)
    emp_sd = np.std(m1 / m0 - 1)
    _, se = relative_lift(mu1, sd**2 / n1, mu0, sd**2 / n0)
    assert float(se) == pytest.approx(emp_sd, rel=0.03)


@pytest.mark.parametrize(
    ("c1", "n1", "c0", "n0"),
    [
        (15, 2000, 0, 2000),  # the example: no p-value at all before
        (0, 2000, 15, 2000),
        (3, 10, 1, 10),
        (9, 10, 1, 10),
        (3, 10, 0, 10),
        (3, 10, 10, 10),
        (5, 10_000_000, 20, 10_000_000),
        (9_999_999, 10_000_000, 1, 10_000_000),
        (12, 400, 9, 380),  # 9 < 10: still exact
    ],
)
def test_small_counts_use_fisher_exact_against_scipy(c1, n1, c0, n0):
    from scipy.stats import fisher_exact

    v = _run(metric("c", "conversion", {"control": conv(n0, c0), "t": conv(n1, c1)}))
    assert v["status"] == "ok" and v["test"] == "fisher_exact"
    ref = fisher_exact([[c1, n1 - c1], [c0, n0 - c0]]).pvalue
    assert v["p_value"] == pytest.approx(ref, rel=1e-12, abs=1e-300)
    assert any("Fisher's exact test" in w for w in v["warnings"])


def test_exact_rule_threshold():
    """Every cell >= 10 keeps the z-test (it matches statsmodels there)."""
    v = _run(metric("c", "conversion", {"control": conv(400, 10), "t": conv(400, 25)}))
    assert v["test"] == "two_proportion_z"
    assert v["p_value"] == pytest.approx(proportions_ztest([25, 10], [400, 400])[1], rel=1e-9)
