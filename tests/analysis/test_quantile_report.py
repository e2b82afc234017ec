"""Quantile metrics and CUPED for ratio metrics through the SQL and the report pipeline.

Every test here runs on SQLite and again on PostgreSQL (db tests do); the postgres-marked one
also checks, on PostgreSQL only, that the window-function query is what ran.
"""
from __future__ import annotations

import csv
import io
import random
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analysis import queries, reports
from analysis.models import Event
from analysis.stats.quantile import order_statistics
from assignment.models import Exposure
from experiments import services
from experiments.models import Metric

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)


def setup_experiment(*, alpha=0.05, cuped=True, start=True):
    Metric.objects.create(key="p90_load", name="Load time p90", event="page_load", kind="quantile",
                          quantile="0.9", numerator_aggregation="sum", conversion_window_hours=48,
                          direction="decrease")
    Metric.objects.create(key="median_views", name="Views per user (median)", event="page_load",
                          kind="quantile", quantile="0.5", numerator_aggregation="count")
    Metric.objects.create(key="aov", name="Revenue per order", event="purchase", kind="ratio",
                          denominator_event="purchase", numerator_aggregation="sum", denominator_aggregation="count")
    experiment = services.create_experiment({
        "key": "speed", "name": "Speed", "traffic_allocation": 100, "cuped": cuped, "significance_level": alpha, "planned_sample_size": 2000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "fast", "weight": 50}],
        "metrics": [{"metric": "p90_load", "role": "primary"}, {"metric": "median_views", "role": "secondary"},
                    {"metric": "aov", "role": "secondary"}],
        "targeting": [],
    }, actor="test")
    return services.start_experiment(experiment, actor="test") if start else experiment


def populate(experiment, *, units=600, seed=1):
    """Exposures 1-3 days ago; page loads (some units none, some before exposure or after the
    48-hour window: not counted); purchases before and after exposure (ratio CUPED)."""
    rng = random.Random(seed)
    now = timezone.now()
    variants = {v.key: v for v in experiment.variants.all()}
    exposures, events, values = [], [], {"control": [], "fast": []}
    for i in range(units):
        key = "control" if i % 2 else "fast"
        t0 = now - timedelta(days=3) + timedelta(seconds=rng.randrange(0, 2 * 86400), microseconds=rng.randrange(10**6))
        unit = f"u{i}"
        exposures.append(Exposure(experiment=experiment, variant=variants[key], unit_id=unit, first_seen=t0,
                                  last_seen=t0, attributes={"platform": rng.choice(["ios", "web"])}))
        loads = [round(rng.lognormvariate(0, 0.6) * (800 if key == "fast" else 1000), 1)
                 for _ in range(rng.choice([0, 1, 1, 2, 3]))]
        for v in loads:
            events.append(Event(event_id=f"l{i}-{len(events)}", unit_id=unit, event="page_load", value=v,
                                timestamp=t0 + rng.uniform(0, 47) * HOUR))
        if loads:
            values[key].append(sum(loads))
        events.append(Event(event_id=f"b{i}", unit_id=unit, event="page_load", value=99_999.0, timestamp=t0 - HOUR))
        events.append(Event(event_id=f"a{i}", unit_id=unit, event="page_load", value=99_999.0, timestamp=t0 + 49 * HOUR))
        level = rng.gammavariate(2, 10)
        for j in range(rng.randrange(1, 4)):
            events.append(Event(event_id=f"p{i}-{j}", unit_id=unit, event="purchase",
                                value=round(level * rng.lognormvariate(0, 0.3), 2), timestamp=t0 - rng.uniform(1, 300) * HOUR))
        for j in range(rng.randrange(0, 4)):
            events.append(Event(event_id=f"q{i}-{j}", unit_id=unit, event="purchase",
                                value=round(level * rng.lognormvariate(0, 0.3), 2), timestamp=t0 + rng.uniform(0, 20) * HOUR))
    Exposure.objects.bulk_create(exposures)
    Event.objects.bulk_create(events)
    return values


def test_order_statistics_from_sql_match_numpy_on_the_same_units():
    experiment = setup_experiment()
    values = populate(experiment)
    stats = queries.metric_statistics(experiment)
    for key, vals in values.items():
        want = order_statistics(vals, 0.9, 0.05)
        got = stats["p90_load"][key]
        assert got.n == want.n == len(vals) and want.n < 300  # units without a page load have no value
        assert (got.quantile_value, got.quantile_lower, got.quantile_upper) == pytest.approx(
            (want.value, want.lower, want.upper), rel=1e-12)
        assert (got.lower_rank, got.upper_rank) == (want.lower_rank, want.upper_rank)
        assert got.pre_sum is None  # no CUPED for quantiles
    # count aggregation, median: ties are resolved by value, not by which unit comes first
    loads_per_unit = stats["median_views"]["control"]
    # (no window here: the load 49 hours after exposure counts, so every unit has a value)
    assert loads_per_unit.quantile_value in (1.0, 2.0, 3.0, 4.0) and loads_per_unit.n == 300
    # alpha changes the interval's ranks (a 99 % interval is wider)
    experiment.significance_level = 0.01
    wide = queries.metric_statistics(experiment, metrics=["p90_load"])["p90_load"]["fast"]
    want = order_statistics(values["fast"], 0.9, 0.01)
    assert (wide.lower_rank, wide.upper_rank) == (want.lower_rank, want.upper_rank)
    assert wide.upper_rank - wide.lower_rank > stats["p90_load"]["fast"].upper_rank - stats["p90_load"]["fast"].lower_rank


def test_segments_and_date_ranges_split_the_quantiles():
    experiment = setup_experiment()
    populate(experiment)
    by_platform = queries.segment_statistics(experiment, "platform", metrics=["p90_load"])
    assert set(by_platform) == {"ios", "web"}
    total = queries.metric_statistics(experiment, metrics=["p90_load"])["p90_load"]
    for key in ("control", "fast"):
        assert sum(by_platform[s]["p90_load"][key].n for s in by_platform) == total[key].n
    nothing = queries.metric_statistics(experiment, until=timezone.now() - timedelta(days=10))
    assert nothing["p90_load"]["fast"].n == 0 and nothing["p90_load"]["fast"].quantile_value is None


def test_report_with_a_p90_metric_and_cuped_for_the_ratio():
    experiment = setup_experiment()
    populate(experiment, units=1200)
    payload = reports.compute_report(experiment).payload
    p90 = next(m for m in payload["metrics"] if m["metric"] == "p90_load")
    assert p90["kind"] == "quantile" and p90["quantile_label"] == "p90" and p90["status"] == "ok"
    fast = next(v for v in p90["variants"] if v["variant"] == "fast")
    assert fast["test"] == "quantile_z" and fast["ci"][0] <= fast["mean"] <= fast["ci"][1]
    assert fast["lift"]["relative"] < 0  # fast pages load faster
    assert fast["p_value_adjusted"] is not None
    aov = next(m for m in payload["metrics"] if m["metric"] == "aov")
    treated = next(v for v in aov["variants"] if v["variant"] == "fast")
    assert treated["estimator"] == "cuped" and treated["cuped"]["variance_reduction"] > 0.1


def test_report_page_names_the_quantile(client, django_user_model):
    experiment = setup_experiment()
    populate(experiment)
    reports.compute_report(experiment)
    client.force_login(django_user_model.objects.create_superuser("a", "a@example.invalid", "pw-for-tests"))
    page = client.get("/reports/speed/").content.decode()
    assert ">p90</th>" in page and ">median</th>" in page
    assert page.count('<div class="small muted">CI ') >= 2  # each variant's order-statistic interval


def test_metric_definitions_are_validated():
    with pytest.raises(ValidationError) as e:
        services.save_metric(Metric(), {"key": "q", "name": "q", "event": "e", "kind": "quantile"})
    assert "quantile" in e.value.message_dict
    with pytest.raises(ValidationError) as e:
        services.save_metric(Metric(), {"key": "q", "name": "q", "event": "e", "kind": "sum", "quantile": 0.5})
    assert "quantile" in e.value.message_dict
    with pytest.raises(ValidationError) as e:
        services.save_metric(Metric(), {"key": "q", "name": "q", "event": "e", "kind": "quantile", "quantile": 0.9,
                                        "cap": 10})
    assert "cap" in e.value.message_dict
    for bad in (0, 1, "1.5", "-0.1"):
        with pytest.raises(ValidationError) as e:
            services.save_metric(Metric(), {"key": "q", "name": "q", "event": "e", "kind": "quantile", "quantile": bad})
        assert "quantile" in e.value.message_dict
    m = services.save_metric(Metric(), {"key": "q", "name": "q", "event": "e", "kind": "quantile", "quantile": "0.99"})
    m.refresh_from_db()
    assert m.pk and str(m.quantile) == "0.9900"


@pytest.mark.parametrize("quantile", ["1.5", "NaN", "Infinity", "abc", "0.12345", None])
def test_api_refuses_a_bad_quantile_naming_the_field(api_client_for, quantile):
    r = api_client_for("admin").post("/api/v1/metrics", {"key": "q", "name": "q", "event": "e", "kind": "quantile",
                                                         "quantile": quantile}, format="json")
    assert r.status_code == 400 and "quantile" in r.json()


def test_api_creates_a_quantile_metric(api_client_for):
    r = api_client_for("admin").post("/api/v1/metrics", {"key": "p99", "name": "p99", "event": "page_load",
                                                         "kind": "quantile", "quantile": "0.99"}, format="json")
    assert r.status_code == 201 and r.json()["quantile"] == "0.9900"


@pytest.mark.postgres
def test_postgresql_ranks_in_the_database():
    assert connection.vendor == "postgresql"
    experiment = setup_experiment()
    values = populate(experiment, units=300, seed=9)
    with CaptureQueriesContext(connection) as ctx:
        stats = queries.metric_statistics(experiment, metrics=["p90_load"])
    assert any("ROW_NUMBER() OVER" in q["sql"] for q in ctx.captured_queries)
    want = order_statistics(values["fast"], 0.9, 0.05)
    assert stats["p90_load"]["fast"].quantile_value == pytest.approx(want.value)


def test_results_api_documents_the_quantile_fields(api_client_for):
    from drf_spectacular.generators import SchemaGenerator

    from .test_results_api import RESULTS, _nullable_to_jsonschema, conforms

    experiment = setup_experiment()
    populate(experiment)
    reports.compute_report(experiment)
    r = api_client_for("analyst").get("/api/v1/experiments/speed/results")
    assert r.status_code == 200
    conforms(_nullable_to_jsonschema(SchemaGenerator().get_schema(request=None, public=True)), RESULTS, "GET", r)
    p90 = next(m for m in r.json()["metrics"] if m["metric"] == "p90_load")
    assert p90["quantile_label"] == "p90" and all(len(v["ci"]) == 2 for v in p90["variants"])
    body = api_client_for("analyst").get("/api/v1/experiments/speed/results.csv").content.decode()
    fast = next(row for row in csv.DictReader(io.StringIO(body))
                if row["metric"] == "p90_load" and row["variant"] == "fast" and row["section"] == "overall")
    want = next(v for v in p90["variants"] if v["variant"] == "fast")["mean"]
    assert float(fast["mean"]) == pytest.approx(want)  # the value column holds the p90


def test_admin_form_names_the_quantile_field():
    from experiments.forms import MetricForm

    base = {"key": "q", "name": "q", "event": "page_load", "direction": "decrease",
            "numerator_aggregation": "sum", "denominator_aggregation": "count"}
    form = MetricForm(data={**base, "kind": "quantile"})
    assert not form.is_valid() and "quantile" in form.errors
    form = MetricForm(data={**base, "kind": "quantile", "quantile": "0.95", "cap": "10"})
    assert not form.is_valid() and "cap" in form.errors
    form = MetricForm(data={**base, "kind": "quantile", "quantile": "0.95"})
    assert form.is_valid(), form.errors
