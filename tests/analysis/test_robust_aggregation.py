"""Aggregation that survives hostile rows and awkward data (issues 10 #2 and 11).

Rows are inserted directly (around the ingestion API and its value bound) to prove the
aggregation itself is robust: no overflow, stable variances, skewness from stored cubes.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import queries, reports
from analysis.models import Event
from assignment.models import Exposure
from experiments import services
from experiments.models import Metric

from .test_queries import HOUR, T0, event, store

pytestmark = pytest.mark.django_db


def _experiment(key: str, kind: str = "sum", cap: float | None = None):
    Metric.objects.update_or_create(
        key=f"{key}-m", defaults={"name": f"{key} metric", "event": "measure", "kind": kind, "cap": cap}
    )
    return services.create_experiment({
        "key": key, "name": key, "traffic_allocation": 100, "cuped": False,
        "planned_sample_size": 100,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": f"{key}-m", "role": "primary"}],
        "targeting": [],
    })


def _populate(experiment, values: dict[str, list[float | None]]):
    rows, events = [], []
    for variant_key, ys in values.items():
        variant = experiment.variants.get(key=variant_key)
        for i, y in enumerate(ys):
            unit = f"{experiment.key}-{variant_key}-{i}"
            rows.append(Exposure(experiment=experiment, variant=variant, unit_id=unit,
                                 first_seen=T0, last_seen=T0, attributes={}))
            if y is not None:
                events.append(event(unit, "measure", T0 + HOUR, y))
    Exposure.objects.bulk_create(rows)
    store(*events)


def test_huge_values_do_not_break_the_report(db):
    """Regression (issue 10 #2): a value whose square overflows a double made every report fail
    (SQLite: an infinite sum of squares; PostgreSQL: 'value out of range: overflow')."""
    exp = _experiment("huge")
    rng = np.random.default_rng(3)
    _populate(exp, {"control": list(rng.normal(10, 2, 40)), "b": list(rng.normal(10, 2, 40))})
    unit = "huge-b-0"
    Event.objects.create(event_id="boom", unit_id=unit, event="measure", value=1e200, timestamp=T0 + HOUR)
    Event.objects.create(event_id="boom2", unit_id="huge-control-0", event="measure", value=-1.7e308,
                         timestamp=T0 + HOUR)
    stats = queries.metric_statistics(exp)["huge-m"]
    for vs in stats.values():
        for name in ("sum", "sum_sq", "m2", "m3"):
            assert math.isfinite(getattr(vs, name)), name
    assert stats["b"].clamped_units == 1 and stats["control"].clamped_units == 1
    assert max(abs(stats["b"].sum), abs(stats["control"].sum)) <= 2 * queries.VALUE_LIMIT
    payload = reports.compute_report(exp, until=T0 + 48 * HOUR, include_segments=False, flush=False).payload
    b = payload["metrics"][0]["variants"][1]
    assert any("value limit" in w for w in b.get("warnings", [])) or b["status"] == "insufficient_data"
    assert payload["decision"]["recommendation"]


def test_values_beyond_limit_are_clamped_exactly(db):
    exp = _experiment("clamp")
    _populate(exp, {"control": [1.0, 2.0, 3.0], "b": [1e300, 5.0, None]})
    b = queries.metric_statistics(exp)["clamp-m"]["b"]
    assert b.sum == pytest.approx(queries.VALUE_LIMIT + 5.0)
    assert b.sum_sq == pytest.approx(queries.VALUE_LIMIT**2 + 25.0)
    assert b.clamped_units == 1


def test_tiny_spread_around_a_large_mean_is_not_constant(db):
    """Regression (issue 11): values around 100,000 with sd 0.3 were labelled 'every unit has the
    same value' because sum_sq - sum^2/n cancels in double precision."""
    rng = np.random.default_rng(11)
    c = 100_000 + rng.normal(0, 0.3, 300)
    t = 100_000.05 + rng.normal(0, 0.3, 300)
    exp = _experiment("stable")
    _populate(exp, {"control": list(c), "b": list(t)})
    stats = queries.metric_statistics(exp)["stable-m"]
    assert stats["control"].m2 / 299 == pytest.approx(np.var(c, ddof=1), rel=1e-6)
    payload = reports.compute_report(exp, until=T0 + 48 * HOUR, include_segments=False, flush=False).payload
    ctrl, b = payload["metrics"][0]["variants"]
    assert b["status"] == "ok", b.get("reason")
    assert ctrl["sd"] == pytest.approx(np.std(c, ddof=1), rel=1e-6)
    from scipy.stats import ttest_ind

    assert b["fixed_horizon"]["p_value"] == pytest.approx(ttest_ind(t, c, equal_var=False).pvalue, rel=1e-4)


def test_truly_constant_data_is_still_constant(db):
    exp = _experiment("const")
    _populate(exp, {"control": [100_000.1] * 50, "b": [100_000.1] * 49 + [100_000.2]})
    payload = reports.compute_report(exp, until=T0 + 48 * HOUR, include_segments=False, flush=False).payload
    b = payload["metrics"][0]["variants"][1]
    assert b["status"] == "insufficient_data" and "same value" in b["reason"]


def test_zero_units_with_events_keep_their_zeros(db):
    """Units without events count as 0: the centred moments include them."""
    exp = _experiment("zeros")
    ys = [5.0, 7.0, None, None, 11.0]
    _populate(exp, {"control": ys, "b": [1.0, None]})
    vs = queries.metric_statistics(exp)["zeros-m"]["control"]
    full = np.array([5.0, 7.0, 0.0, 0.0, 11.0])
    assert vs.m2 == pytest.approx(((full - full.mean()) ** 2).sum())
    assert vs.m3 == pytest.approx(((full - full.mean()) ** 3).sum())


def test_skew_warning_from_stored_cubes(db):
    rng = np.random.default_rng(5)
    exp = _experiment("skew")
    c = rng.lognormal(0, 2.0, 200)
    t = rng.lognormal(0, 2.0, 200)
    _populate(exp, {"control": list(c), "b": list(t)})
    payload = reports.compute_report(exp, until=T0 + 48 * HOUR, include_segments=False, flush=False).payload
    b = payload["metrics"][0]["variants"][1]
    assert any("heavily skewed" in w and "355" in w for w in b["warnings"])
