"""Quantile metrics: point estimates against numpy, interval ranks against scipy's binomial,
coverage of the per-variant and difference intervals by simulation (fixed seeds, ~1 s)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.stats import MetricInput, StatsInputError, VariantStats, analyze_experiment
from analysis.stats.frequentist import z_critical
from analysis.stats.inputs import clean_stats
from analysis.stats.moments import Estimate, Insufficient
from analysis.stats.quantile import (
    interval_ranks,
    order_statistics,
    point_rank,
    quantile_estimate,
    quantile_label,
    standard_error,
    units_needed,
)

from .helpers import assert_json_safe, treatment

Z = z_critical(0.05)


def qstats(values, q: float = 0.9, alpha: float = 0.05) -> VariantStats:
    o = order_statistics(values, q, alpha)
    return VariantStats(n=o.n, quantile_value=o.value, quantile_lower=o.lower, quantile_upper=o.upper,
                        lower_rank=o.lower_rank, upper_rank=o.upper_rank)


def qmetric(variants, q: float = 0.9, **kw) -> MetricInput:
    return MetricInput(key="p", name="Load time", kind="quantile", role=kw.pop("role", "primary"),
                       direction=kw.pop("direction", "decrease"), variants=variants, quantile=q, **kw)


@pytest.mark.parametrize("q", [0.01, 0.1, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 0.3333])
def test_point_estimate_is_numpys_inverted_cdf_quantile(q):
    rng = np.random.default_rng(int(q * 10_000))
    for n in (1, 2, 7, 10, 100, 999, 1000, 4321):
        x = rng.lognormal(0, 1, n)
        assert order_statistics(x, q, 0.05).value == np.quantile(x, q, method="inverted_cdf")
        assert point_rank(n, q) == math.ceil(round(n * q, 9))  # exact even where n q is an integer


def test_interval_ranks_cover_with_the_binomial_probability_scipy_gives():
    # P(x_(L) <= Q < x_(U)) = P(L <= B < U) for B ~ Binomial(n, q): the exact coverage.
    for n, q in [(100, 0.5), (400, 0.9), (1000, 0.9), (5000, 0.99), (20_000, 0.999)]:
        lo, hi = interval_ranks(n, q, Z)
        exact = stats.binom.cdf(hi - 1, n, q) - stats.binom.cdf(lo - 1, n, q)
        assert 0.945 <= exact <= 0.975, (n, q, exact)
        nq, s = n * q, Z * math.sqrt(n * q * (1 - q))
        assert lo == math.floor(nq - s) and hi == math.ceil(nq + s)  # rounded outwards


def test_interval_agrees_with_scipys_quantile_test_on_the_same_data():
    rng = np.random.default_rng(3)
    x = rng.exponential(2.0, 2000)
    o = order_statistics(x, 0.9, 0.05)
    ci = stats.quantile_test(x, q=np.quantile(x, 0.9), p=0.9).confidence_interval(0.95)
    # scipy picks exact binomial ranks; ours are the normal approximation: neighbours at most.
    xs = np.sort(x)
    assert abs(np.searchsorted(xs, ci.low) + 1 - o.lower_rank) <= 2
    assert abs(np.searchsorted(xs, ci.high) + 1 - o.upper_rank) <= 2


def test_standard_error_is_the_interval_width_over_two_z_up_to_rank_rounding():
    rng = np.random.default_rng(4)
    x = rng.normal(10, 2, 100_000)
    o = order_statistics(x, 0.5, 0.05)
    se = standard_error(o.n, 0.5, o.lower, o.upper, o.lower_rank, o.upper_rank)
    assert se == pytest.approx((o.upper - o.lower) / (2 * Z), rel=0.02)
    # the asymptotic se of a normal median: sqrt(pi/2) sigma / sqrt(n)
    assert se == pytest.approx(math.sqrt(math.pi / 2) * 2 / math.sqrt(100_000), rel=0.12)


@pytest.mark.parametrize("n,q", [(500, 0.5), (1000, 0.9), (3000, 0.99), (200, 0.9)])
def test_coverage_by_simulation(n, q):
    """Per-variant order-statistic interval and the difference's delta-method interval both
    cover the truth about 95 % of the time (lognormal data, treatment scales values by 1.1)."""
    rng = np.random.default_rng(n + int(q * 1000))
    reps = 1000
    lo, hi = interval_ranks(n, q, Z)
    k = point_rank(n, q)
    truth = stats.lognorm.ppf(q, 1.0)
    a = np.sort(rng.lognormal(0, 1, (reps, n)), axis=1)
    b = np.sort(rng.lognormal(0, 1, (reps, n)), axis=1) * 1.1
    assert 0.93 <= np.mean((a[:, lo - 1] <= truth) & (truth <= a[:, hi - 1])) <= 0.98

    def se(x):
        return np.sqrt(n * q * (1 - q)) * (x[:, hi - 1] - x[:, lo - 1]) / (hi - lo)

    d, s = b[:, k - 1] - a[:, k - 1], np.sqrt(se(a) ** 2 + se(b) ** 2)
    assert 0.93 <= np.mean(np.abs(d - 0.1 * truth) <= Z * s) <= 0.975
    # the same through the engine for a few replicates: identical intervals
    for r in range(3):
        body = analyze_experiment(experiment="e", control="c", weights={"c": 1, "t": 1},
                                  metrics=[qmetric({"c": qstats(a[r], q), "t": qstats(b[r], q)}, q)])
        v = treatment(body, "p", "t")
        assert v["lift"]["absolute"] == pytest.approx(d[r])
        assert v["lift"]["ci_absolute"] == pytest.approx([d[r] - Z * s[r], d[r] + Z * s[r]])


def test_false_positive_rate_under_the_null_is_about_alpha():
    rng = np.random.default_rng(11)
    n, q, reps = 800, 0.9, 1000
    a = np.sort(rng.gamma(2.0, 3.0, (reps, n)), axis=1)
    b = np.sort(rng.gamma(2.0, 3.0, (reps, n)), axis=1)
    lo, hi = interval_ranks(n, q, Z)
    k = point_rank(n, q)

    def se(x):
        return np.sqrt(n * q * (1 - q)) * (x[:, hi - 1] - x[:, lo - 1]) / (hi - lo)

    zstat = (b[:, k - 1] - a[:, k - 1]) / np.sqrt(se(a) ** 2 + se(b) ** 2)
    p = 2 * stats.norm.sf(np.abs(zstat))
    assert 0.03 <= np.mean(p < 0.05) <= 0.07


def test_report_block_relative_lift_by_the_delta_method():
    rng = np.random.default_rng(2)
    c, t = rng.lognormal(0, 1, 3000), rng.lognormal(0.1, 1, 3000)
    body = analyze_experiment(experiment="e", control="c", weights={"c": 1, "t": 1},
                              metrics=[qmetric({"c": qstats(c), "t": qstats(t)})])
    assert_json_safe(body)
    m = body["metrics"][0]
    assert m["quantile"] == 0.9 and m["quantile_label"] == "p90"
    v = treatment(body, "p", "t")
    q0, q1 = np.quantile(c, 0.9, method="inverted_cdf"), np.quantile(t, 0.9, method="inverted_cdf")
    assert v["mean"] == q1 and v["test"] == "quantile_z"
    o0, o1 = order_statistics(c, 0.9, 0.05), order_statistics(t, 0.9, 0.05)
    se0 = standard_error(o0.n, 0.9, o0.lower, o0.upper, o0.lower_rank, o0.upper_rank)
    se1 = standard_error(o1.n, 0.9, o1.lower, o1.upper, o1.lower_rank, o1.upper_rank)
    rel_se = math.sqrt(se1**2 / q0**2 + se0**2 * q1**2 / q0**4)
    assert v["lift"]["relative"] == pytest.approx(q1 / q0 - 1)
    assert v["lift"]["ci_relative"] == pytest.approx([q1 / q0 - 1 - Z * rel_se, q1 / q0 - 1 + Z * rel_se])
    p = 2 * stats.norm.sf(abs(q1 - q0) / math.hypot(se0, se1))
    assert v["p_value"] == pytest.approx(p)
    assert v["ci"] == [o1.lower, o1.upper] and v["ci_ranks"] == [o1.lower_rank, o1.upper_rank]
    assert v["verdict"] in ("worse", "inconclusive")  # lower is better, t is higher


def test_multiple_comparisons_include_quantile_metrics():
    rng = np.random.default_rng(8)
    arms = {k: qstats(rng.lognormal(0, 1, 2000)) for k in ("c", "t", "u")}
    body = analyze_experiment(experiment="e", control="c", weights={"c": 1, "t": 1, "u": 1},
                              metrics=[qmetric(arms)], correction="holm")
    assert body["multiple_comparisons"]["families"]["primary_secondary"]["tests"] == 2
    ps = sorted(treatment(body, "p", k)["p_value"] for k in ("t", "u"))
    adj = sorted(treatment(body, "p", k)["p_value_adjusted"] for k in ("t", "u"))
    assert adj[0] == pytest.approx(min(1.0, 2 * ps[0]))


def test_tiny_samples_and_ties_give_no_interval_and_say_why():
    rng = np.random.default_rng(1)
    few = {"c": qstats(rng.normal(size=20)), "t": qstats(rng.normal(size=20))}
    body = analyze_experiment(experiment="e", control="c", weights={"c": 1, "t": 1}, metrics=[qmetric(few)])
    m = body["metrics"][0]
    assert m["status"] == "insufficient_data"
    needed = units_needed(0.9, Z)
    assert "too few for a confidence interval of the p90" in m["reason"] and f"{needed:,}" in m["reason"]
    assert treatment(body, "p", "t")["ci"] is None and treatment(body, "p", "t")["mean"] is not None
    lo, hi = interval_ranks(needed, 0.9, Z)
    assert lo is not None and hi is not None and None in interval_ranks(needed - 1, 0.9, Z)
    # 95 % of units share the value 0: the p90 has no spread around it
    tied = np.r_[np.zeros(950), rng.uniform(1, 2, 50)]
    body = analyze_experiment(experiment="e", control="c", weights={"c": 1, "t": 1},
                              metrics=[qmetric({"c": qstats(tied), "t": qstats(tied)})])
    assert "tied" in body["metrics"][0]["reason"]
    empty = analyze_experiment(experiment="e", control="c", weights={"c": 1, "t": 1},
                               metrics=[qmetric({"c": VariantStats(n=0), "t": VariantStats(n=0)})])
    assert "no units with a value" in empty["metrics"][0]["reason"]
    assert_json_safe(empty)


def test_quantile_estimate_is_an_estimate_with_the_order_statistic_variance():
    x = np.arange(1.0, 1001.0)
    st = clean_stats(qstats(x, 0.5), "quantile", "v")
    est = quantile_estimate(st, 0.5, 0.05)
    assert isinstance(est, Estimate) and est.mean == 500.0
    assert est.var_mean == pytest.approx((math.sqrt(250) * 1.0) ** 2)  # values 1 apart: se = sqrt(n q (1-q))
    assert isinstance(quantile_estimate(clean_stats(VariantStats(n=0), "quantile", "v"), 0.5, 0.05), Insufficient)


def test_invalid_inputs_name_the_field():
    ok = qstats(np.arange(100.0))
    with pytest.raises(StatsInputError, match=r"metrics\[0\]\.quantile"):
        analyze_experiment(experiment="e", control="c", weights={"c": 1, "t": 1},
                           metrics=[qmetric({"c": ok, "t": ok}, q=1.0)])
    with pytest.raises(StatsInputError, match=r"metrics\[0\]\.quantile"):
        analyze_experiment(experiment="e", control="c", weights={"c": 1, "t": 1}, metrics=[MetricInput(
            key="m", name="m", kind="sum", role="primary", direction="increase", quantile=0.5,
            variants={"c": VariantStats(n=2, sum=1, sum_sq=1)})])
    bad = VariantStats(n=10, quantile_value=5.0, quantile_lower=6.0, quantile_upper=7.0, lower_rank=2, upper_rank=9)
    with pytest.raises(StatsInputError, match="quantile_value"):
        clean_stats(bad, "quantile", "v")
    with pytest.raises(StatsInputError, match="lower_rank"):
        clean_stats(VariantStats(n=10, quantile_value=5.0, quantile_lower=4.0, quantile_upper=7.0,
                                 lower_rank=9, upper_rank=2), "quantile", "v")
    with pytest.raises(StatsInputError, match="quantile_upper"):
        clean_stats(VariantStats(n=10, quantile_value=5.0, quantile_upper=float("inf")), "quantile", "v")


def test_labels():
    assert [quantile_label(q) for q in (0.5, 0.9, 0.99, 0.999, 0.25, 0.9999)] == [
        "median", "p90", "p99", "p99.9", "p25", "p99.99"]


def test_srm_without_exposure_counts_uses_a_metric_that_counts_every_unit():
    rng = np.random.default_rng(9)
    q = qmetric({"c": qstats(rng.lognormal(0, 1, 500)), "t": qstats(rng.lognormal(0, 1, 900))})
    mean = MetricInput(key="rev", name="Revenue", kind="sum", role="secondary", direction="increase",
                       variants={k: VariantStats(n=1000, sum=500.0, sum_sq=900.0) for k in ("c", "t")})
    body = analyze_experiment(experiment="e", control="c", weights={"c": 1, "t": 1}, metrics=[q, mean])
    assert body["srm"]["counts"] == {"c": 1000, "t": 1000} and body["srm"]["passed"]
