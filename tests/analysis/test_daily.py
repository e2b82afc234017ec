"""Per-day series (``analysis.daily``): one SQL query of per-day increments, cumulated in Python.

The oracle is a direct computation in Python from the generated rows (units first exposed by the
end of each day, their events before then); the cumulative estimate of the last day must be the
report's own. Runs on SQLite and, in the PostgreSQL pass, on PostgreSQL (the SQL is the point).
"""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection

from analysis import queries, reports
from analysis.models import Event
from assignment.models import Exposure
from experiments.models import Metric

from .reporting import make_experiment, populate
from .test_results_api import RESULTS, conforms, openapi  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

RATIO = {"key": "revenue_per_order", "name": "Revenue per order", "event": "purchase", "kind": "ratio",
         "numerator_aggregation": "sum", "denominator_event": "purchase", "denominator_aggregation": "count"}
COUNT = {"key": "purchases", "name": "Purchases", "event": "purchase", "kind": "count"}
P90 = {"key": "p90_revenue", "name": "Revenue p90", "event": "purchase", "kind": "quantile", "quantile": "0.9",
       "numerator_aggregation": "sum"}


def _experiment(**fields):
    for data in (RATIO, COUNT, P90):
        Metric.objects.update_or_create(key=data["key"], defaults=data)
    experiment = make_experiment(metrics=[
        {"metric": "purchase", "role": "primary"},
        {"metric": "revenue", "role": "secondary"},
        {"metric": "purchases", "role": "secondary"},
        {"metric": "revenue_per_order", "role": "secondary"},
        {"metric": "refund", "role": "guardrail", "non_inferiority_margin": 1.0},
        {"metric": "p90_revenue", "role": "secondary"},  # order statistics: not in the daily series
    ], **fields)
    result = populate(experiment, units=400, days=4, lift=0.3)
    return experiment, result


def _oracle(experiment, end: datetime) -> dict[str, dict[str, tuple[int, float, float]]]:
    """{metric: {variant: (n, sum, sum of squares)}} as of ``end``, from the rows in Python."""
    keys = {v.pk: v.key for v in experiment.variants.all()}
    events: dict[str, list[tuple[str, datetime, float]]] = {}
    for unit, name, ts, value in Event.objects.values_list("unit_id", "event", "timestamp", "value"):
        events.setdefault(unit, []).append((name, ts, value or 0.0))
    out: dict[str, dict[str, list]] = {m: {k: [0, 0.0, 0.0] for k in keys.values()}
                                       for m in ("purchase", "revenue", "purchases", "refund")}
    for x in Exposure.objects.filter(experiment=experiment, first_seen__lt=end):
        mine = [(n, t, v) for n, t, v in events.get(x.unit_id, []) if x.first_seen <= t < end]
        window = x.first_seen + timedelta(hours=168)
        values = {
            "purchase": float(any(n == "purchase" and t < window for n, t, _ in mine)),
            "revenue": min(500.0, sum(v for n, _, v in mine if n == "purchase")),
            "purchases": float(sum(1 for n, _, _ in mine if n == "purchase")),
            "refund": float(any(n == "refund" for n, _, _ in mine)),
        }
        for metric, y in values.items():
            acc = out[metric][keys[x.variant_id]]
            acc[0] += 1
            acc[1] += y
            acc[2] += y * y
    return {m: {k: tuple(v) for k, v in per.items()} for m, per in out.items()}


def _day_end(day: str, until: datetime) -> datetime:
    return min(until, datetime.combine(date.fromisoformat(day) + timedelta(days=1), datetime.min.time(), UTC))


def _check_against_python(experiment, until: datetime) -> dict:
    snapshot = reports.compute_report(experiment, until=until, include_segments=False)
    series = snapshot.payload["daily_series"]
    assert series["days"] and "error" not in series
    by_metric = {m["metric"]: m for m in series["metrics"]}
    assert set(by_metric) == {"purchase", "revenue", "purchases", "revenue_per_order", "refund"}
    previous: dict[tuple[str, str], float] = {}
    for i, day in enumerate(series["days"]):
        end = _day_end(day, until)
        expected = _oracle(experiment, end)
        as_of = queries.metric_statistics(experiment, until=end)  # the report's SQL as of that day
        for key, metric in by_metric.items():
            for v in metric["variants"]:
                point = v["points"][i]
                assert point["date"] == day
                if key in expected:
                    n, s, _ = expected[key][v["variant"]]
                    assert point["units"] == n
                    assert point["mean"] == pytest.approx(s / n if n else None, rel=1e-9)
                    total = s
                else:  # ratio: cumulative numerator over denominator, as the report's SQL has it
                    st = as_of[key][v["variant"]]
                    assert point["units"] == st.n
                    if st.den_sum:
                        assert point["mean"] == pytest.approx(st.sum / st.den_sum, rel=1e-9)
                    total = st.sum
                # daily value: the day's increment per unit exposed by then
                if key != "revenue_per_order" and point["units"]:
                    added = total - previous.get((key, v["variant"]), 0.0)
                    assert point["value"] == pytest.approx(added / point["units"], rel=1e-9, abs=1e-12)
                previous[(key, v["variant"])] = total
    return snapshot.payload


def test_daily_series_equal_a_python_computation_and_end_at_the_report(settings):
    experiment, result = _experiment()
    until = result.end + timedelta(hours=5, minutes=30)  # the last day stops before midnight
    payload = _check_against_python(experiment, until)
    series = payload["daily_series"]
    last_day = (until - timedelta(microseconds=1)).date().isoformat()
    assert series["days"][-1] == last_day and series["partial_day"] == last_day
    assert [p["partial"] for p in series["metrics"][0]["variants"][0]["points"]] == \
        [d == last_day for d in series["days"]]
    # The cumulative estimate of the last day is the report's own (CUPED on, every metric kind).
    assert "p90_revenue" in {m["metric"] for m in payload["metrics"]}
    for metric in payload["metrics"]:
        if metric["metric"] == "p90_revenue":
            continue
        daily_metric = next(m for m in series["metrics"] if m["metric"] == metric["metric"])
        for v in metric["variants"]:
            last = next(d for d in daily_metric["variants"] if d["variant"] == v["variant"])["points"][-1]
            assert last["units"] == v["units"]
            if v.get("is_control") or v.get("status") != "ok":
                continue
            assert last["lift"] == pytest.approx(v["lift"]["relative"], rel=1e-6)
            assert last["ci_relative"] == pytest.approx(v["lift"]["ci_relative"], rel=1e-6)
            assert last["p_value"] == pytest.approx(v["p_value"], rel=1e-5, abs=1e-12)


def test_daily_series_at_midnight_has_no_partial_day_and_respects_the_day_limit(settings):
    experiment, result = _experiment(cuped=False, sequential_testing=True)
    midnight = result.end.replace(hour=0) + timedelta(days=1)
    settings.REPORT_DAILY_MAX_DAYS = 2
    payload = reports.compute_report(experiment, until=midnight, include_segments=False).payload
    series = payload["daily_series"]
    assert series["partial_day"] is None
    assert len(series["days"]) == 2 and series["omitted_days"] >= 2
    assert series["days"][-1] == (midnight - timedelta(days=1)).date().isoformat()
    # Earlier days still count in the cumulative figures: the last point is the report's.
    purchase = next(m for m in payload["metrics"] if m["metric"] == "purchase")
    treated = next(v for v in purchase["variants"] if not v["is_control"])
    last = series["metrics"][0]["variants"][1]["points"][-1]
    assert last["units"] == treated["units"]
    assert last["ci_relative"] == pytest.approx(treated["lift"]["ci_relative"], rel=1e-6)  # always-valid


def test_a_since_window_counts_only_its_units(settings):
    experiment, result = _experiment(cuped=False)
    since = (result.start + timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
    until = result.end
    series = reports.compute_window(experiment, since=since, until=until)["daily_series"]
    assert series["days"][0] == since.date().isoformat()
    total = Exposure.objects.filter(experiment=experiment, first_seen__gte=since, first_seen__lt=until).count()
    assert sum(v["points"][-1]["units"] for v in series["metrics"][0]["variants"]) == total


def test_no_exposures_gives_an_empty_series():
    experiment = make_experiment()
    series = reports.compute_report(experiment, include_segments=False).payload["daily_series"]
    assert series["days"] == [] and series["metrics"] == []


@pytest.mark.postgres
def test_daily_series_on_postgresql():
    assert connection.vendor == "postgresql"
    experiment, result = _experiment()
    _check_against_python(experiment, result.end + timedelta(hours=3))


def test_results_api_serves_the_daily_series(api_client_for, openapi):  # noqa: F811
    experiment, result = _experiment()
    snapshot = reports.compute_report(experiment, until=result.end + timedelta(hours=2))
    r = api_client_for("analyst").get(f"/api/v1/experiments/{experiment.key}/results")
    assert r.status_code == 200
    conforms(openapi, RESULTS, "GET", r)
    documented = openapi["components"]["schemas"]["DailySeries"]["properties"]
    assert {"days", "partial_day", "metrics"} <= set(documented)
    body = r.json()["daily_series"]
    assert body == snapshot.payload["daily_series"]
    assert body["partial_day"] == body["days"][-1]
    assert {m["metric"] for m in body["metrics"]} == {m["metric"] for m in r.json()["metrics"]} - {"p90_revenue"}
    assert body["excluded"] == ["p90_revenue"]
    # a date range (computed on demand) carries its own series
    day = body["days"][1]
    r = api_client_for("analyst").get(f"/api/v1/experiments/{experiment.key}/results?from={day}")
    assert r.status_code == 200 and r.json()["daily_series"]["days"][0] == day
    conforms(openapi, RESULTS, "GET", r)
