"""Sample size and power against statsmodels NormalIndPower."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from analysis.stats import StatsInputError, analyze_experiment, sample_size
from analysis.stats.power import mde_at, power_at

from .helpers import assert_json_safe, conv, metric, suff


@pytest.mark.parametrize(
    ("baseline", "mde", "relative", "alpha", "power", "k"),
    [
        (0.10, 0.10, True, 0.05, 0.8, 2),
        (0.10, 0.01, False, 0.05, 0.8, 2),
        (0.02, -0.15, True, 0.01, 0.9, 2),
        (0.5, 0.02, True, 0.05, 0.8, 4),
        (0.999, -0.001, True, 0.05, 0.8, 2),
    ],
)
def test_conversion_sample_size_matches_statsmodels(baseline, mde, relative, alpha, power, k):
    res = sample_size(baseline, mde, alpha=alpha, power=power, relative=relative, n_variants=k)
    assert_json_safe(res)
    target = baseline * (1 + mde) if relative else baseline + mde
    es = abs(proportion_effectsize(target, baseline))
    ref = NormalIndPower().solve_power(
        effect_size=es, alpha=alpha / (k - 1), power=power, ratio=1.0
    )
    assert res["per_variant"] == math.ceil(ref)
    assert res["total"] == res["per_variant"] * k
    assert res["metric_type"] == "conversion" and res["target"] == pytest.approx(target)


def test_published_value_10_percent_baseline_10_percent_relative_mde():
    # 10 % -> 11 %, alpha 0.05 two-sided, power 0.8: ~14,750 per variant (Cohen's h)
    res = sample_size(0.10, 0.10)
    assert 14_700 <= res["per_variant"] <= 14_800


@pytest.mark.parametrize(
    ("baseline", "mde", "sd", "relative"), [(50.0, 0.05, 20.0, True), (3.0, 0.2, 1.5, False)]
)
def test_mean_sample_size_matches_statsmodels(baseline, mde, sd, relative):
    res = sample_size(baseline, mde, sd=sd, relative=relative)
    delta = baseline * mde if relative else mde
    ref = NormalIndPower().solve_power(effect_size=delta / sd, alpha=0.05, power=0.8, ratio=1.0)
    assert res["per_variant"] == math.ceil(ref)
    assert res["metric_type"] == "mean"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"baseline": 0.0, "mde": 0.1}, "baseline"),
        ({"baseline": 1.2, "mde": 0.1}, "baseline"),
        ({"baseline": float("nan"), "mde": 0.1}, "baseline"),
        ({"baseline": "x", "mde": 0.1}, "baseline"),
        ({"baseline": 0.1, "mde": 0.0}, "mde"),
        ({"baseline": 0.6, "mde": 1.0}, "mde"),
        ({"baseline": 0.1, "mde": 1e-9}, "mde"),
        ({"baseline": 0.1, "mde": 0.1, "alpha": 1.0}, "alpha"),
        ({"baseline": 0.1, "mde": 0.1, "power": 0.0}, "power"),
        ({"baseline": 0.1, "mde": 0.1, "alpha": 0.2, "power": 0.1}, "power"),
        ({"baseline": 10, "mde": 0.1, "sd": -1}, "sd"),
        ({"baseline": 0, "mde": 0.1, "sd": 1}, "baseline"),
        ({"baseline": 0.1, "mde": 0.1, "n_variants": 1}, "n_variants"),
        ({"baseline": 0.1, "mde": 0.1, "n_variants": 2.5}, "n_variants"),
        ({"baseline": 0.1, "mde": 0.1, "n_variants": True}, "n_variants"),
        ({"baseline": 0.1, "mde": 0.1, "n_variants": float("nan")}, "n_variants"),
        ({"baseline": 0.1, "mde": 0.1, "n_variants": "3"}, "n_variants"),
        ({"baseline": 0.1, "mde": 0.1, "relative": "yes"}, "relative"),
    ],
)
def test_invalid_inputs_name_the_field(kwargs, field):
    with pytest.raises(StatsInputError) as e:
        sample_size(**kwargs)
    assert e.value.field == field
    assert isinstance(e.value, ValueError)


def test_power_and_mde_helpers_match_statsmodels():
    sd, n = 2.0, 1500
    se = sd * math.sqrt(2 / n)
    for effect in (0.05, 0.2, 0.3):
        ref = NormalIndPower().power(effect_size=effect / sd, nobs1=n, alpha=0.05, ratio=1.0)
        assert power_at(effect, se, 0.05) == pytest.approx(ref, rel=1e-9)
    ref_es = NormalIndPower().solve_power(
        effect_size=None, nobs1=n, alpha=0.05, power=0.8, ratio=1.0
    )
    assert mde_at(se, 0.05, 0.8) == pytest.approx(ref_es * sd, rel=1e-4)


def test_power_block_in_report():
    rng = np.random.default_rng(1)
    n = 5000
    plan = sample_size(0.10, 0.10)["total"]
    body = analyze_experiment(
        experiment="e",
        control="control",
        weights={"control": 1, "t": 1},
        metrics=[
            metric("c", "conversion", {"control": conv(n, 500), "t": conv(n, 510)}),
            metric(
                "r",
                "sum",
                {"control": suff(rng.normal(size=n)), "t": suff(rng.normal(size=n))},
                role="secondary",
            ),
        ],
        planned_sample_size=plan,
        daily_units=1000,
    )
    assert_json_safe(body)
    p = body["power"]
    assert p["units_so_far"] == 2 * n and p["planned_sample_size"] == plan
    assert p["progress"] == pytest.approx(2 * n / plan)
    assert p["days_left"] == pytest.approx((plan - 2 * n) / 1000)
    assert p["metric"] == "c"
    # current MDE matches statsmodels for the current sizes (normal approximation, Wald variance)
    se = math.sqrt(0.1 * 0.9 * 2 / n)
    assert p["mde_reached_absolute"] == pytest.approx(mde_at(se, 0.05, 0.8))
    assert p["mde_reached_relative"] == pytest.approx(p["mde_reached_absolute"] / 0.1)
    assert p["mde_planned_relative"] == pytest.approx(0.10, rel=0.06)  # plan was sized for +10 %
    assert 0.3 < p["power_reached"] < 0.8
    reasons = " ".join(body["decision"]["reasons"])
    assert "more day(s)" in reasons and "planned" in reasons


def test_power_reached_equals_target_at_planned_size():
    n = 20_000
    body = analyze_experiment(
        experiment="e",
        control="control",
        weights={"control": 1, "t": 1},
        metrics=[metric("c", "conversion", {"control": conv(n, 2000), "t": conv(n, 2000)})],
        planned_sample_size=2 * n,
        daily_units=500,
        power=0.9,
    )
    assert body["power"]["power_reached"] == pytest.approx(0.9, abs=1e-6)
    assert body["power"]["days_left"] == 0
