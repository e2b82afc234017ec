"""CUPED: theta against a raw-data regression, adjusted test against scipy on adjusted data."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from analysis.stats import analyze_experiment
from analysis.stats.cuped import cuped_theta
from analysis.stats.inputs import clean_stats

from .helpers import assert_json_safe, metric, suff, treatment

W = {"control": 1, "t": 1, "u": 1}


def _data(seed, n=3000, rho_slope=0.8, effects=(0.0, 0.5, -0.2)):
    rng = np.random.default_rng(seed)
    out = {}
    for key, eff in zip(W, effects, strict=True):
        pre = rng.gamma(2.0, 5.0, n)
        y = 3.0 + rho_slope * pre + rng.normal(0, 4.0, n) + eff
        out[key] = (pre, y)
    return out


def test_theta_equals_ols_coefficient_with_arm_fixed_effects():
    data = _data(1)
    st = [clean_stats(suff(y, pre=pre), "sum", k) for k, (pre, y) in data.items()]
    theta = cuped_theta(st)
    pre = np.concatenate([p for p, _ in data.values()])
    y = np.concatenate([v for _, v in data.values()])
    arm = np.repeat(np.arange(3), [len(v) for _, v in data.values()])
    X = np.column_stack([pre, arm == 1, arm == 2, np.ones_like(pre)]).astype(float)
    assert theta == pytest.approx(sm.OLS(y, X).fit().params[0], rel=1e-9)


def test_adjusted_comparison_matches_welch_on_adjusted_raw_data():
    data = _data(2)
    m = metric("rev", "sum", {k: suff(y, pre=pre) for k, (pre, y) in data.items()})
    body = analyze_experiment(experiment="e", control="control", weights=W, metrics=[m])
    assert_json_safe(body)
    pre_all = np.concatenate([p for p, _ in data.values()])
    st = [clean_stats(suff(y, pre=pre), "sum", k) for k, (pre, y) in data.items()]
    theta = cuped_theta(st)
    adj = {k: y - theta * (pre - pre_all.mean()) for k, (pre, y) in data.items()}
    for key in ("t", "u"):
        v = treatment(body, "rev", key)
        assert v["estimator"] == "cuped" and v["cuped"]["applied"] is True
        ref = stats.ttest_ind(adj[key], adj["control"], equal_var=False)
        assert v["p_value"] == pytest.approx(ref.pvalue, rel=1e-7)
        ci = ref.confidence_interval(0.95)
        assert v["lift"]["ci_absolute"] == pytest.approx([ci.low, ci.high], rel=1e-7)
        assert v["lift"]["absolute"] == pytest.approx(
            adj[key].mean() - adj["control"].mean(), rel=1e-9
        )
        assert v["cuped"]["theta"] == pytest.approx(theta)
        # unadjusted figures are still reported and match plain Welch
        raw = stats.ttest_ind(data[key][1], data["control"][1], equal_var=False)
        assert v["unadjusted"]["p_value"] == pytest.approx(raw.pvalue, rel=1e-7)
        # variance reduction reported ~ rho^2 and the interval shrinks
        rho = np.corrcoef(*data[key])[0, 1]
        assert v["cuped"]["variance_reduction"] == pytest.approx(rho**2, abs=0.05)
        raw_w = v["unadjusted"]["ci_absolute"][1] - v["unadjusted"]["ci_absolute"][0]
        adj_w = v["lift"]["ci_absolute"][1] - v["lift"]["ci_absolute"][0]
        assert adj_w == pytest.approx(
            raw_w * np.sqrt(1 - v["cuped"]["variance_reduction"]), rel=0.02
        )


def test_cuped_switch_and_not_applicable_cases():
    data = _data(3)
    variants = {k: suff(y, pre=pre) for k, (pre, y) in data.items()}
    off = analyze_experiment(
        experiment="e",
        control="control",
        weights=W,
        metrics=[metric("rev", "sum", variants)],
        cuped=False,
    )
    v = treatment(off, "rev", "t")
    assert v["estimator"] == "unadjusted" and v["cuped"]["applied"] is False
    assert v["lift"] == {
        k: v["unadjusted"][k] for k in ("absolute", "relative", "ci_absolute", "ci_relative")
    }
    # ratio metrics: a pre-period numerator alone is not enough (CUPED for ratios needs the
    # pre-period denominator and cross sums too, see test_cuped_ratio.py)
    rng = np.random.default_rng(0)
    x = rng.poisson(2, 100) + 1.0
    ratio_vs = {k: suff(rng.gamma(2, 2, 100) * x, x=x, pre=rng.normal(0, 1, 100)) for k in W}
    body = analyze_experiment(
        experiment="e", control="control", weights=W, metrics=[metric("aov", "ratio", ratio_vs)]
    )
    v = treatment(body, "aov", "t")
    assert v["estimator"] == "unadjusted" and v["cuped"]["reason"] == "no pre-period data"
    # pre-period metric constant (e.g. all new users) -> not applied, labelled
    flat = {k: suff(y, pre=np.zeros_like(y)) for k, (_, y) in data.items()}
    body = analyze_experiment(
        experiment="e", control="control", weights=W, metrics=[metric("rev", "sum", flat)]
    )
    assert_json_safe(body)
    v = treatment(body, "rev", "t")
    assert (
        v["status"] == "ok"
        and v["estimator"] == "unadjusted"
        and "does not vary" in v["cuped"]["reason"]
    )
    # no pre data at all -> no cuped block
    plain = {k: suff(y) for k, (_, y) in data.items()}
    body = analyze_experiment(
        experiment="e", control="control", weights=W, metrics=[metric("rev", "sum", plain)]
    )
    assert "cuped" not in treatment(body, "rev", "t")


def test_cuped_on_conversions_uses_z_on_adjusted_values():
    rng = np.random.default_rng(8)
    n = 20_000
    variants = {}
    for key, p in (("control", 0.10), ("t", 0.11), ("u", 0.10)):
        pre = rng.binomial(1, 0.3, n).astype(float)
        y = rng.binomial(1, np.clip(p + 0.2 * (pre - 0.3), 0, 1)).astype(float)
        variants[key] = suff(y, pre=pre)
    body = analyze_experiment(
        experiment="e",
        control="control",
        weights=W,
        metrics=[metric("buy", "conversion", variants)],
    )
    assert_json_safe(body)
    v = treatment(body, "buy", "t")
    assert v["test"] == "z_cuped" and v["estimator"] == "cuped"
    assert v["bayesian"]["model"] == "normal"
    assert 0 < v["cuped"]["variance_reduction"] < 0.2


def test_an_insufficient_arm_does_not_switch_cuped_off_for_the_others():
    rng = np.random.default_rng(12)
    n = 2000
    variants = {}
    for key, p in (("control", 0.10), ("t", 0.12), ("u", 0.0)):
        pre = rng.binomial(1, 0.3, n).astype(float)
        y = (rng.random(n) < p * (1 + pre)).astype(float)
        variants[key] = suff(y, pre=pre)
    body = analyze_experiment(
        experiment="e",
        control="control",
        weights=W,
        metrics=[metric("buy", "conversion", variants)],
    )
    assert_json_safe(body)
    u = treatment(body, "buy", "u")  # zero conversions: compared by the exact test, unadjusted
    assert u["status"] == "ok" and u["test"] == "fisher_exact" and u["estimator"] == "unadjusted"
    v = treatment(body, "buy", "t")
    assert v["status"] == "ok" and v["estimator"] == "cuped"
