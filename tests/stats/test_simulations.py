"""Monte Carlo checks of error rates and coverage (fixed seeds; vectorised data generation).

Tolerances are 3.5 Monte Carlo standard errors: with the fixed seeds the outcome is
deterministic, and a real miscalibration (e.g. a wrong variance) is far outside them.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stats import VariantStats, analyze_experiment
from analysis.stats.frequentist import proportions_ztest_pooled, welch_ttest
from analysis.stats.multiple import holm
from analysis.stats.sequential import always_valid

from .helpers import metric, treatment

pytestmark = pytest.mark.slow

ALPHA = 0.05
REPS = 2000
TOL = 3.5 * np.sqrt(ALPHA * (1 - ALPHA) / REPS)  # ~0.017


def _vs(y: np.ndarray, pre: np.ndarray | None = None) -> list[VariantStats]:
    """Per-experiment sufficient statistics from a (reps, n) block of raw data."""
    s, q = y.sum(axis=1), (y * y).sum(axis=1)
    if pre is None:
        return [VariantStats(n=y.shape[1], sum=a, sum_sq=b) for a, b in zip(s, q, strict=True)]
    ps, pq, pc = pre.sum(axis=1), (pre * pre).sum(axis=1), (pre * y).sum(axis=1)
    return [
        VariantStats(n=y.shape[1], sum=a, sum_sq=b, pre_sum=c, pre_sum_sq=d, pre_cross=e)
        for a, b, c, d, e in zip(s, q, ps, pq, pc, strict=True)
    ]


def _conv(counts: np.ndarray, n: int) -> list[VariantStats]:
    return [VariantStats(n=n, sum=float(c), sum_sq=float(c)) for c in counts]


def _rate(x) -> float:
    return float(np.mean(x))


def _run(c_conv, t_conv, c_rev, t_rev, **kw):
    out = []
    for i in range(REPS):
        body = analyze_experiment(
            experiment="sim",
            control="control",
            weights={"control": 1, "t": 1},
            cuped=False,
            metrics=[
                metric("conv", "conversion", {"control": c_conv[i], "t": t_conv[i]}),
                metric("rev", "sum", {"control": c_rev[i], "t": t_rev[i]}),
            ],
            **kw,
        )
        out.append((treatment(body, "conv", "t"), treatment(body, "rev", "t")))
    return out


def _inside(ci, value) -> bool:
    return ci[0] <= value <= ci[1]


def test_aa_false_positive_rate_and_coverage():
    rng = np.random.default_rng(20240601)
    n_c, n_r = 4000, 800
    conv_c, conv_t = (
        _conv(rng.binomial(n_c, 0.08, REPS), n_c),
        _conv(rng.binomial(n_c, 0.08, REPS), n_c),
    )
    rev_c = _vs(rng.lognormal(1.0, 0.8, (REPS, n_r)))
    rev_t = _vs(rng.lognormal(1.0, 0.8, (REPS, n_r)))
    res = _run(conv_c, conv_t, rev_c, rev_t, correction="none")
    for k in range(2):
        vs = [r[k] for r in res]
        assert all(v["status"] == "ok" for v in vs)
        fpr = _rate([v["significant"] for v in vs])
        assert abs(fpr - ALPHA) < TOL, fpr
        assert abs(_rate([_inside(v["lift"]["ci_absolute"], 0.0) for v in vs]) - 0.95) < TOL
        assert abs(_rate([_inside(v["lift"]["ci_relative"], 0.0) for v in vs]) - 0.95) < TOL
        assert abs(_rate([_inside(v["credible_interval_relative"], 0.0) for v in vs]) - 0.95) < TOL
        # chance to beat control is ~uniform under the null
        ctb = np.array([v["chance_to_beat_control"] for v in vs])
        assert abs(ctb.mean() - 0.5) < 0.03 and abs(_rate(ctb > 0.95) - 0.05) < TOL
    # Holm keeps the family-wise error rate of the two metrics at or below alpha
    fwer = _rate([min(holm([a["p_value"], b["p_value"]])) < ALPHA for a, b in res])
    assert fwer <= ALPHA + TOL


def test_ab_coverage_of_true_lift():
    rng = np.random.default_rng(777)
    n_c, n_r, p0, p1, lift = 5000, 1000, 0.10, 0.11, 0.05
    conv_c, conv_t = (
        _conv(rng.binomial(n_c, p0, REPS), n_c),
        _conv(rng.binomial(n_c, p1, REPS), n_c),
    )
    mu0 = np.exp(1.0 + 0.8**2 / 2)  # lognormal mean
    rev_c = _vs(rng.lognormal(1.0, 0.8, (REPS, n_r)))
    rev_t = _vs(rng.lognormal(1.0, 0.8, (REPS, n_r)) * (1 + lift))
    res = _run(conv_c, conv_t, rev_c, rev_t)
    truths = [(p1 - p0, p1 / p0 - 1), (mu0 * lift, lift)]
    for k, (abs_true, rel_true) in enumerate(truths):
        vs = [r[k] for r in res]
        assert abs(_rate([_inside(v["lift"]["ci_absolute"], abs_true) for v in vs]) - 0.95) < TOL
        assert abs(_rate([_inside(v["lift"]["ci_relative"], rel_true) for v in vs]) - 0.95) < TOL
        assert (
            abs(_rate([_inside(v["credible_interval_relative"], rel_true) for v in vs]) - 0.95)
            < TOL
        )


def _peeking_stats(rng, days, per_day, kind, effect=0.0):
    """Cumulative per-arm sufficient statistics after each day, shape (REPS, days)."""
    n = per_day * np.arange(1, days + 1)
    out = []
    for eff in (0.0, effect):
        if kind == "conversion":
            s = np.cumsum(rng.binomial(per_day, 0.1 + eff, (REPS, days)), axis=1).astype(float)
            q = s
        else:  # normal data: daily mean and sum of squared deviations are independent
            mean = rng.normal(5.0 + eff, 2.0 / np.sqrt(per_day), (REPS, days))
            ss = 4.0 * rng.chisquare(per_day - 1, (REPS, days))
            s = np.cumsum(per_day * mean, axis=1)
            q = np.cumsum(ss + per_day * mean**2, axis=1)
        out.append((s, q))
    return n, out


@pytest.mark.parametrize("kind", ["conversion", "sum"])
def test_daily_peeking_sequential_controls_error_fixed_horizon_does_not(kind):
    rng = np.random.default_rng(31 if kind == "conversion" else 32)
    days, per_day = 30, 200
    n, ((s0, q0), (s1, q1)) = _peeking_stats(rng, days, per_day, kind)
    m0, m1 = s0 / n, s1 / n
    if kind == "conversion":
        v0, v1 = m0 * (1 - m0), m1 * (1 - m1)
        _, p_fixed = proportions_ztest_pooled(s1, n, s0, n)
    else:
        v0, v1 = (q0 - s0**2 / n) / (n - 1), (q1 - s1**2 / n) / (n - 1)
        _, _, p_fixed = welch_ttest(m1, v1, n, m0, v0, n)
    horizon = days * per_day
    p_seq, half = always_valid(m1 - m0, v1 / n + v0 / n, v1 / horizon + v0 / horizon, ALPHA)
    fixed_fpr = _rate((p_fixed < ALPHA).any(axis=1))
    seq_fpr = _rate((p_seq < ALPHA).any(axis=1))
    assert fixed_fpr > ALPHA + 3 * TOL, fixed_fpr  # peeking inflates the fixed-horizon test (~0.2+)
    assert seq_fpr <= ALPHA, seq_fpr
    # time-uniform coverage: the confidence sequence holds 0 on *every* day in >= 95 % of runs
    assert _rate((np.abs(m1 - m0) <= half).all(axis=1)) >= 0.95
    # the report gives the same always-valid p-value for one of these experiments on some day
    i, d = 7, 12
    vs = {
        "control": VariantStats(n=int(n[d]), sum=s0[i, d], sum_sq=q0[i, d]),
        "t": VariantStats(n=int(n[d]), sum=s1[i, d], sum_sq=q1[i, d]),
    }
    body = analyze_experiment(
        experiment="e",
        control="control",
        weights={"control": 1, "t": 1},
        metrics=[metric("m", kind, vs)],
        sequential=True,
        planned_sample_size=2 * horizon,
    )
    assert treatment(body, "m", "t")["p_value"] == pytest.approx(float(p_seq[i, d]), rel=1e-9)


def test_sequential_detects_real_effects():
    rng = np.random.default_rng(33)
    days, per_day = 30, 200
    n, ((s0, q0), (s1, q1)) = _peeking_stats(rng, days, per_day, "sum", effect=0.4)
    m0, m1 = s0 / n, s1 / n
    v0, v1 = (q0 - s0**2 / n) / (n - 1), (q1 - s1**2 / n) / (n - 1)
    horizon = days * per_day
    p_seq, _ = always_valid(m1 - m0, v1 / n + v0 / n, v1 / horizon + v0 / horizon, ALPHA)
    assert _rate((p_seq < ALPHA).any(axis=1)) > 0.9


def test_cuped_keeps_coverage_and_narrows_intervals():
    rng = np.random.default_rng(4242)
    reps, n, effect, rho = REPS, 500, 0.3, 0.7
    out = {}
    for arm, eff in (("control", 0.0), ("t", effect)):
        pre = rng.normal(10.0, 2.0, (reps, n))
        noise = rng.normal(0.0, 2.0, (reps, n))
        y = 10.0 + eff + rho * (pre - 10.0) + np.sqrt(1 - rho**2) * noise
        out[arm] = _vs(y, pre)
    cov_adj, cov_raw, fp, ratio, vr = [], [], [], [], []
    for i in range(reps):
        body = analyze_experiment(
            experiment="e",
            control="control",
            weights={"control": 1, "t": 1},
            metrics=[metric("m", "sum", {k: v[i] for k, v in out.items()})],
        )
        v = treatment(body, "m", "t")
        assert v["estimator"] == "cuped"
        cov_adj.append(_inside(v["lift"]["ci_absolute"], effect))
        cov_raw.append(_inside(v["unadjusted"]["ci_absolute"], effect))
        adj_w = np.diff(v["lift"]["ci_absolute"])[0]
        raw_w = np.diff(v["unadjusted"]["ci_absolute"])[0]
        ratio.append(adj_w / raw_w)
        vr.append(v["cuped"]["variance_reduction"])
        fp.append(not _inside(v["lift"]["ci_absolute"], effect))
    assert abs(_rate(cov_adj) - 0.95) < TOL
    assert abs(_rate(cov_raw) - 0.95) < TOL
    assert np.mean(ratio) == pytest.approx(np.sqrt(1 - rho**2), rel=0.03)
    assert np.mean(vr) == pytest.approx(rho**2, abs=0.02)
