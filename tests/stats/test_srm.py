"""Sample ratio mismatch: chi-square goodness of fit vs scipy.stats.chisquare."""

from __future__ import annotations

import pytest
from scipy import stats

from analysis.stats import StatsInputError, analyze_experiment, srm_check

from .helpers import assert_json_safe, conv, metric


@pytest.mark.parametrize(
    ("counts", "weights"),
    [
        ({"control": 5012, "green": 4988}, {"control": 50, "green": 50}),
        ({"control": 5300, "green": 4700}, {"control": 1, "green": 1}),
        ({"a": 1000, "b": 2100, "c": 950}, {"a": 0.25, "b": 0.5, "c": 0.25}),
        ({"a": 5_000_123, "b": 5_001_877}, {"a": 1, "b": 1}),
    ],
)
def test_matches_scipy_chisquare(counts, weights):
    res = srm_check(counts, weights)
    assert_json_safe(res)
    obs = [counts[k] for k in weights]
    total = sum(obs)
    wsum = sum(weights.values())
    exp = [total * weights[k] / wsum for k in weights]
    ref = stats.chisquare(obs, exp)
    assert res["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert res["chi2"] == pytest.approx(ref.statistic, rel=1e-12)
    assert res["passed"] == (ref.pvalue >= 0.001)
    assert res["expected"] == pytest.approx(dict(zip(weights, exp, strict=True)))


def test_flags_at_one_in_a_thousand():
    assert srm_check({"a": 5012, "b": 4988}, {"a": 1, "b": 1})["passed"] is True
    bad = srm_check({"a": 5300, "b": 4700}, {"a": 1, "b": 1})
    assert bad["passed"] is False and bad["p_value"] < 0.001
    assert "can't be trusted" in bad["message"]


def test_stray_units_and_empty_and_bad_input():
    assert srm_check({"a": 10, "b": 3}, {"a": 1, "b": 0})["passed"] is False
    assert srm_check({"a": 10, "x": 1}, {"a": 1, "b": 1})["passed"] is False
    empty = srm_check({}, {"a": 1, "b": 1})
    assert empty["passed"] is True and empty["p_value"] is None
    for weights in ({}, {"a": -1, "b": 2}, {"a": 0, "b": 0}):
        with pytest.raises(StatsInputError) as e:
            srm_check({"a": 1}, weights)
        assert e.value.field == "weights"
    with pytest.raises(StatsInputError) as e:
        srm_check({"a": -3}, {"a": 1, "b": 1})
    assert e.value.field == "exposure_counts.a"


def test_flagged_report_says_results_cannot_be_trusted():
    m = metric("c", "conversion", {"control": conv(5300, 500), "t": conv(4700, 700)})
    body = analyze_experiment(
        experiment="e", control="control", weights={"control": 1, "t": 1}, metrics=[m]
    )
    assert_json_safe(body)
    assert body["srm"]["passed"] is False
    assert body["decision"]["recommendation"] == "invalid_srm"
    assert any("can't be trusted" in r for r in body["decision"]["reasons"])
    # explicit exposure counts override the metric's n
    body = analyze_experiment(
        experiment="e",
        control="control",
        weights={"control": 1, "t": 1},
        metrics=[m],
        exposure_counts={"control": 5000, "t": 5000},
    )
    assert body["srm"]["passed"] is True
