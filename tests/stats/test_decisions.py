"""Decisions that respect the design (issue 11): early looks, no plan, non-inferiority
guardrails, skewness and stable variances at the engine level."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from analysis.stats import StatsInputError, VariantStats, analyze_experiment

from .helpers import assert_json_safe, conv, metric, suff, treatment

W = {"control": 1, "green": 1}
WINNER = {"control": conv(10_000, 1000), "green": conv(10_000, 1150)}  # +15 %, p ~ 0.001


def _run(metrics, **kw):
    body = analyze_experiment(experiment="e", control="control", weights=W, metrics=metrics, **kw)
    assert_json_safe(body)
    return body


def test_early_look_never_ships_and_says_until_when():
    """Regression: with sequential off the report said Ship at half the planned size."""
    body = _run([metric("p", "conversion", WINNER)], planned_sample_size=40_000)
    d = body["decision"]
    assert d["recommendation"] == "keep_running" and d["early_look"] is True
    assert d["headline"] == "Early look: not conclusive until 40,000 units (50%)."
    v = treatment(body, "p", "green")
    assert v["early_look"] and v["significant"] is False and v["would_be_significant"] is True
    assert v["verdict"] == "inconclusive"
    # the always-valid interval is shown alongside the fixed-horizon one
    assert v["sequential"]["ci_relative"] and v["lift"]["ci_relative"] == v["fixed_horizon"]["ci_relative"]
    text = " ".join(d["reasons"])
    assert "always-valid range" in text and "What would change the call" in text
    assert "the call would be Ship" in text
    # at the planned size the same data ship
    assert _run([metric("p", "conversion", WINNER)], planned_sample_size=20_000)["decision"][
        "recommendation"
    ] == "ship"


def test_planned_duration_counts_when_no_size_is_planned():
    m = [metric("p", "conversion", WINNER)]
    early = _run(m, planned_duration_days=14, elapsed_days=7)["decision"]
    assert early["recommendation"] == "keep_running" and "until day 14 (50%)" in early["headline"]
    assert _run(m, planned_duration_days=14, elapsed_days=14)["decision"]["recommendation"] == "ship"
    # with a planned size the size governs, even past the planned duration
    assert _run(m, planned_sample_size=40_000, planned_duration_days=14, elapsed_days=20)[
        "decision"
    ]["recommendation"] == "keep_running"


def test_sequential_may_decide_early():
    body = _run(
        [metric("p", "conversion", {"control": conv(10_000, 1000), "green": conv(10_000, 1250)})],
        planned_sample_size=40_000,
        sequential=True,
    )
    assert body["decision"]["recommendation"] == "ship"
    assert treatment(body, "p", "green")["early_look"] is False


def test_no_plan_never_ships():
    body = _run([metric("p", "conversion", WINNER)])
    d = body["decision"]
    assert d["recommendation"] == "keep_running" and d["plan_missing"] is True
    assert "No analysis plan" in d["headline"]
    assert body["plan"]["has_plan"] is False


def _guard(treat_rate: float, margin: float | None = None, direction: str = "decrease", n=80_000):
    return metric(
        "err",
        "conversion",
        {"control": conv(n, int(0.2 * n)), "green": conv(n, int(treat_rate * n))},
        role="guardrail",
        direction=direction,
        margin=margin,
        name="Error rate",
    )


@pytest.mark.parametrize(
    ("rate", "status"),
    [(0.2, "holds"), (0.201, "not_shown"), (0.215, "breached"), (0.197, "holds")],
)
def test_guardrail_non_inferiority_against_scipy(rate, status):
    body = _run([metric("p", "conversion", WINNER), _guard(rate)], planned_sample_size=20_000)
    v = treatment(body, "err", "green")
    ni = v["non_inferiority"]
    assert ni["status"] == status and ni["margin_relative"] == 0.02
    # one-sided 95 % upper bound of the relative change (lower is better), delta method
    n = 80_000
    c, t = 0.2, int(rate * n) / n
    rel = t / c - 1
    se = np.sqrt(t * (1 - t) / n / c**2 + c * (1 - c) / n * t**2 / c**4)
    assert ni["worst_case_relative"] == pytest.approx(rel + sps.norm.ppf(0.95) * se, rel=1e-9)
    assert ni["p_value"] == pytest.approx(sps.norm.sf((0.02 - rel) / se), rel=1e-9)
    word = {"holds": "holds: worst case", "not_shown": "not yet shown: worst case",
            "breached": "breached: at best"}[status]
    assert ni["text"].startswith(word) and "vs margin +2.0%" in ni["text"]
    assert v["guardrail_alert"] is (status == "breached")
    rec = body["decision"]["recommendation"]
    assert rec == {"holds": "ship", "not_shown": "keep_running", "breached": "do_not_ship"}[status]


def test_guardrail_direction_aware_and_margin():
    # an increase-is-good guardrail dropping 1 % with a 5 % margin holds
    g = metric(
        "ret",
        "conversion",
        {"control": conv(40_000, 20_000), "green": conv(40_000, 19_800)},
        role="guardrail",
        margin=0.05,
    )
    ni = treatment(_run([g], planned_sample_size=20_000), "ret", "green")["non_inferiority"]
    assert ni["status"] == "holds" and ni["margin_relative"] == -0.05
    assert ni["worst_case_relative"] < -0.01 and ni["text"].endswith("vs margin -5.0%")
    with pytest.raises(StatsInputError, match="non_inferiority_margin"):
        _run([metric("x", "conversion", WINNER, role="guardrail", margin=0.0)])


def test_early_look_guardrail_uses_always_valid_interval():
    body = _run([metric("p", "conversion", WINNER), _guard(0.26)], planned_sample_size=200_000)
    v = treatment(body, "err", "green")
    assert v["non_inferiority"]["interval"] == "always_valid"
    assert v["non_inferiority"]["status"] == "breached"
    assert body["decision"]["recommendation"] == "do_not_ship"


def test_stable_variance_with_centred_moments():
    """Regression: values ~100,000 with sd 0.3 were 'every unit has the same value'."""
    rng = np.random.default_rng(4)
    c = 100_000 + rng.normal(0, 0.3, 500)
    t = 100_000.1 + rng.normal(0, 0.3, 500)

    def vs(y):
        return VariantStats(
            n=y.size, sum=float(y.sum()), sum_sq=float((y * y).sum()),
            m2=float(((y - y.mean()) ** 2).sum()), m3=float(((y - y.mean()) ** 3).sum()),
        )

    naive = treatment(_run([metric("m", "sum", {"control": suff(c), "green": suff(t)})]), "m", "green")
    assert naive["status"] == "insufficient_data" and "same value" in naive["reason"]
    v = treatment(_run([metric("m", "sum", {"control": vs(c), "green": vs(t)})]), "m", "green")
    assert v["status"] == "ok"
    assert v["p_value"] == pytest.approx(sps.ttest_ind(t, c, equal_var=False).pvalue, rel=1e-6)
    const = VariantStats(n=50, sum=50 * 100_000.1, sum_sq=50 * 100_000.1**2, m2=0.0, m3=0.0)
    v = treatment(_run([metric("m", "sum", {"control": const, "green": const})]), "m", "green")
    assert v["status"] == "insufficient_data" and "same value" in v["reason"]


def test_skew_warning_kohavi_rule():
    rng = np.random.default_rng(8)
    y0, y1 = rng.lognormal(0, 1.5, 400), rng.lognormal(0, 1.5, 400)

    def vs(y):
        return VariantStats(n=y.size, sum=float(y.sum()), sum_sq=float((y * y).sum()),
                            sum_cube=float((y**3).sum()))

    v = treatment(_run([metric("m", "sum", {"control": vs(y0), "green": vs(y1)})]), "m", "green")
    g1 = sps.skew(y1)
    assert 355 * g1 * g1 > 400
    warning = next(w for w in v["warnings"] if "green is heavily skewed" in w)
    assert f"skewness {g1:.1f}" in warning
    y = rng.normal(10, 1, 400)
    v = treatment(_run([metric("m", "sum", {"control": vs(y), "green": vs(y + 0.1)})]), "m", "green")
    assert not any("skewed" in w for w in v["warnings"])


def test_guardrail_without_spread_does_not_divide_by_zero():
    """Regression (segments analyse guardrails too): no events in a small treatment arm gives a
    relative lift of -100 % with no spread; the non-inferiority test must not raise."""
    errors = {"control": conv(40, 3), "green": conv(40, 0)}
    ni = treatment(_run([metric("err", "conversion", errors, role="guardrail", direction="decrease")]),
                   "err", "green")["non_inferiority"]
    assert ni["p_value"] == 0.0 and ni["worst_case_relative"] == -1.0 and ni["status"] == "holds"
    # the same drop where higher is better: shown beyond the margin
    ni = treatment(_run([metric("ret", "conversion", errors, role="guardrail")]), "ret", "green")["non_inferiority"]
    assert ni["p_value"] == 1.0 and ni["status"] == "breached"
