"""Data edge cases give labelled 'insufficient_data' results: never an exception, NaN or inf."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.stats import MetricInput, StatsInputError, VariantStats, analyze_experiment

from .helpers import assert_json_safe, conv, metric, suff, treatment

W = {"control": 1, "t": 1}


def run(*metrics, weights=W, **kw):
    body = analyze_experiment(
        experiment="e", control="control", weights=weights, metrics=list(metrics), **kw
    )
    assert_json_safe(body)
    return body


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize(
    ("control", "treat", "needle"),
    [
        (conv(1000, 0), conv(1000, 0), "no conversions in either"),
        (conv(10, 10), conv(10, 10), "no conversions in either"),
        (conv(1, 1), conv(500, 40), "only one unit"),
        (conv(0, 0), conv(500, 40), "no units"),
        (conv(500, 40), VariantStats(n=0), "no units"),
    ],
)
def test_conversion_edges(control, treat, needle, sequential):
    body = run(
        metric("c", "conversion", {"control": control, "t": treat}),
        sequential=sequential,
        exposure_counts={"control": 1000, "t": 1000},
    )
    v = treatment(body, "c", "t")
    assert v["status"] == "insufficient_data" and needle in v["reason"]
    assert v["p_value"] is None and v["significant"] is False and v["lift"] is None
    m = body["metrics"][0]
    assert m["status"] == "insufficient_data" and m["reason"]
    assert body["decision"]["recommendation"] == "keep_running"
    assert any("can't be compared yet" in r for r in body["decision"]["reasons"])


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize(
    ("control", "treat"),
    [
        (conv(1000, 0), conv(1000, 12)),
        (conv(1000, 50), conv(1000, 0)),
        (conv(10, 10), conv(10, 4)),
        (conv(10, 4), conv(10, 10)),
    ],
)
def test_one_arm_without_variation_is_compared_exactly(control, treat, sequential):
    """Regression: 0 (or all) conversions in one arm used to give no p-value at all."""
    body = run(metric("c", "conversion", {"control": control, "t": treat}), sequential=sequential)
    v = treatment(body, "c", "t")
    assert v["status"] == "ok" and v["test"] == "fisher_exact"
    assert 0.0 < v["fixed_horizon"]["p_value"] <= 1.0


@pytest.mark.parametrize("kind", ["count", "sum"])
def test_zero_variance_and_too_few_units(kind):
    const = suff(np.full(100, 3.7))
    normal = suff(np.random.default_rng(0).normal(3, 1, 100))
    for c, t, needle in [
        (const, normal, "same value"),
        (normal, const, "same value"),
        (const, const, "same value"),
        (suff(np.array([2.0])), normal, "only one unit"),
        (normal, suff(np.array([])), "no units"),
    ]:
        v = treatment(run(metric("m", kind, {"control": c, "t": t}), sequential=True), "m", "t")
        assert v["status"] == "insufficient_data" and needle in v["reason"], (c, t)


def test_missing_variant_counts_as_no_units():
    body = run(metric("c", "conversion", {"control": conv(100, 10)}))
    v = treatment(body, "c", "t")
    assert v["status"] == "insufficient_data" and v["units"] == 0


def test_one_sided_huge_imbalance():
    body = run(
        metric("c", "conversion", {"control": conv(10_000_000, 1_000_000), "t": conv(10, 2)}),
        metric(
            "m",
            "sum",
            {"control": VariantStats(10_000_000, 3e7, 1e8), "t": VariantStats(2, 5.0, 13.0)},
            role="secondary",
        ),
        sequential=True,
        planned_sample_size=100,
        daily_units=0,
    )
    assert body["srm"]["passed"] is False
    assert body["decision"]["recommendation"] == "invalid_srm"
    for key in ("c", "m"):
        v = treatment(body, key, "t")
        assert v["status"] == "ok"
        assert 0 <= v["p_value"] <= 1 and 0 <= v["chance_to_beat_control"] <= 1
        assert any("very unequal" in w for w in v["warnings"])
    assert any("Fisher's exact test" in w for w in treatment(body, "c", "t")["warnings"])
    assert any("only 2 units" in w for w in treatment(body, "m", "t")["warnings"])


def test_zero_control_mean_gives_no_relative_lift():
    y0 = np.array([-1.0, 1.0, -2.0, 2.0])
    y1 = np.array([0.5, 1.5, 2.5, 1.0])
    v = treatment(run(metric("m", "sum", {"control": suff(y0), "t": suff(y1)})), "m", "t")
    assert (
        v["status"] == "ok" and v["lift"]["relative"] is None and v["lift"]["ci_relative"] is None
    )
    assert v["credible_interval_relative"] is None


def test_no_metrics_and_no_exposures():
    body = run()
    assert body["metrics"] == [] and body["srm"]["p_value"] is None
    assert body["decision"]["recommendation"] == "keep_running"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"control": "nope"}, "control"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"power": 1.5}, "power"),
        ({"correction": "bonferroni"}, "correction"),
        ({"weights": {}}, "weights"),
        ({"planned_sample_size": -5}, "planned_sample_size"),
        ({"daily_units": -1}, "daily_units"),
        (
            {"metrics": [MetricInput("m", "M", "median", "primary", "increase", {})]},
            "metrics[0].kind",
        ),
        ({"metrics": [MetricInput("m", "M", "sum", "vip", "increase", {})]}, "metrics[0].role"),
        ({"metrics": [MetricInput("m", "M", "sum", "primary", "up", {})]}, "metrics[0].direction"),
        (
            {"metrics": [metric("c", "conversion", {"control": conv(10, 11)})]},
            "metrics[0].variants.control.sum",
        ),
        (
            {"metrics": [metric("c", "sum", {"control": VariantStats(n=-1)})]},
            "metrics[0].variants.control.n",
        ),
        (
            {"metrics": [metric("c", "sum", {"control": VariantStats(n=3, sum=float("inf"))})]},
            "metrics[0].variants.control.sum",
        ),
        (
            {"metrics": [metric("c", "ratio", {"control": VariantStats(n=3, sum=1.0)})]},
            "metrics[0].variants.control.den_sum",
        ),
        ({"metrics": [metric("a", "sum", {}), metric("a", "sum", {})]}, "metrics"),
    ],
)
def test_invalid_configuration_raises_named_error(kwargs, field):
    args = {"experiment": "e", "control": "control", "weights": W, "metrics": []} | kwargs
    with pytest.raises(StatsInputError) as e:
        analyze_experiment(**args)
    assert e.value.field == field


values = st.one_of(
    st.just(np.array([])),
    st.lists(st.sampled_from([0.0, 1.0]), min_size=0, max_size=6).map(np.array),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=0, max_size=6).map(np.array),
    st.integers(0, 6).map(lambda n: np.full(n, 2.5)),
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(y0=values, y1=values, pre=st.booleans(), seq=st.booleans())
def test_fuzz_never_raises_nan_or_inf(y0, y1, pre, seq):
    def vs(y, kind):
        if kind == "conversion":
            y = (y > 0.5).astype(float)
        x = np.abs(np.round(y)) % 3
        return suff(
            y,
            x=x if kind == "ratio" else None,
            pre=(y * 0.5 + 1.0) if pre and kind != "ratio" else None,
        )

    metrics = [
        metric(k, k, {"control": vs(y0, k), "t": vs(y1, k)})
        for k in ("conversion", "count", "sum", "ratio")
    ]
    body = run(*metrics, sequential=seq, planned_sample_size=10, daily_units=1.0)
    for m in body["metrics"]:
        for v in m["variants"]:
            assert v["status"] in ("ok", "insufficient_data")
            if v["status"] == "insufficient_data":
                assert v["reason"]
