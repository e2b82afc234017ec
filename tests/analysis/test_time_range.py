"""Results API time parameters: ``?from=``/``?to=`` (a range computed on demand, nothing stored),
``?at=`` as a date, and unknown query parameters refused with a 400 naming them.

Runs on SQLite and (in the PostgreSQL pass) on PostgreSQL: the range is SQL.
"""
from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from analysis import reports
from analysis.models import Event, ReportSnapshot
from assignment.models import Exposure

from .reporting import make_experiment, populate
from .test_results_api import RESULTS, conforms, openapi  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

URL = "/api/v1/experiments/checkout/results"


@pytest.fixture
def analyst(api_client_for):
    return api_client_for("analyst")


@pytest.fixture
def running():
    experiment = make_experiment()
    result = populate(experiment, units=900, days=5, lift=0.2)
    return experiment, result


def _day(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _expected(experiment, since: datetime, until: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """Units first exposed in [since, until) and those who purchased in [first_seen, until)
    within the 168 h window, per variant: counted in Python from the rows (the oracle)."""
    keys = {v.pk: v.key for v in experiment.variants.all()}
    units: dict[str, int] = {k: 0 for k in keys.values()}
    buyers: dict[str, int] = {k: 0 for k in keys.values()}
    purchases: dict[str, list[datetime]] = {}
    for unit, ts in Event.objects.filter(event="purchase").values_list("unit_id", "timestamp"):
        purchases.setdefault(unit, []).append(ts)
    for x in Exposure.objects.filter(experiment=experiment, first_seen__gte=since, first_seen__lt=until):
        key = keys[x.variant_id]
        units[key] += 1
        end = min(until, x.first_seen + timedelta(hours=168))
        if any(x.first_seen <= t < end for t in purchases.get(x.unit_id, [])):
            buyers[key] += 1
    return units, buyers


def test_from_to_dates_restrict_exposures_and_events_without_storing(analyst, running, openapi):  # noqa: F811
    experiment, result = running
    reports.compute_report(experiment, include_segments=False)
    stored = ReportSnapshot.objects.count()
    first = _day(result.start) + timedelta(days=1)
    last = first + timedelta(days=1)  # ?to=<date> includes that whole day
    r = analyst.get(f"{URL}?from={first.date()}&to={last.date()}")
    assert r.status_code == 200, r.json()
    conforms(openapi, RESULTS, "GET", r)
    body = r.json()
    assert ReportSnapshot.objects.count() == stored  # computed on demand, not stored
    assert body["snapshot_id"] is None
    until = last + timedelta(days=1)
    assert body["window"] == {"from": first.isoformat().replace("+00:00", "Z"),
                              "to": until.isoformat().replace("+00:00", "Z")}
    units, buyers = _expected(experiment, first, until)
    assert 0 < sum(units.values()) < Exposure.objects.filter(experiment=experiment).count()
    assert body["srm"]["counts"] == units
    purchase = next(m for m in body["metrics"] if m["metric"] == "purchase")
    for v in purchase["variants"]:
        assert v["units"] == units[v["variant"]]
        assert v["mean"] == pytest.approx(buyers[v["variant"]] / units[v["variant"]])
    assert {row["date"] for row in body["daily_exposures"]} == {str(first.date()), str(last.date())}


def test_from_to_timestamps_and_open_ends(analyst, running):
    experiment, result = running
    since = result.start + timedelta(hours=30, minutes=15)
    until = since + timedelta(hours=20)
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    body = analyst.get(f"{URL}?from={stamp(since)}&to={stamp(until)}").json()
    assert body["srm"]["counts"] == _expected(experiment, since, until)[0]
    only_from = analyst.get(f"{URL}?from={stamp(since)}").json()
    far = datetime.now(UTC) + timedelta(days=1)
    assert only_from["srm"]["counts"] == _expected(experiment, since, far)[0]
    only_to = analyst.get(f"{URL}?to={stamp(until)}").json()
    assert only_to["srm"]["counts"] == _expected(experiment, result.start - timedelta(days=1), until)[0]
    assert only_to["window"]["from"] is None


def test_csv_and_page_exports_honour_the_range(analyst, running, client, django_user_model):
    experiment, result = running
    first = _day(result.start) + timedelta(days=1)
    r = analyst.get(f"{URL}.csv?from={first.date()}&to={first.date()}")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    assert f"{first.date():%Y%m%d}" in r["Content-Disposition"]
    units = _expected(experiment, first, first + timedelta(days=1))[0]
    rows = [row for row in csv.DictReader(io.StringIO(r.content.decode())) if row["section"] == "overall"]
    assert {row["variant"]: int(row["units"]) for row in rows if row["metric"] == "purchase"} == units


def test_range_parameter_errors_name_the_parameter(analyst, running, openapi):  # noqa: F811
    cases = {
        "from=yesterday": "from",
        "from=2026-02-30": "from",
        "to=2026-01-01T00:00:00": "to",
        "from=2026-01-02&to=2026-01-01": "to",
        "from=2026-01-01&at=2026-01-02": "at",
        "from=2026-01-01&phase=9": "phase",
    }
    for query, field in cases.items():
        r = analyst.get(f"{URL}?{query}")
        assert r.status_code == 400 and field in r.json(), (query, r.json())
        conforms(openapi, RESULTS, "GET", r)
        assert analyst.get(f"{URL}.csv?{query}").status_code == 400


def test_range_of_an_experiment_never_started(analyst):
    make_experiment(start=False)
    r = analyst.get(f"{URL}?from=2026-01-01")
    assert r.status_code == 404 and "not started" in r.json()["detail"]


def test_at_accepts_a_date_meaning_the_end_of_that_day(analyst):
    experiment = make_experiment()
    result = populate(experiment, units=300, days=4)
    day1 = _day(result.start) + timedelta(days=1)
    early = reports.compute_report(experiment, until=day1 + timedelta(hours=1), include_segments=False)
    late = reports.compute_report(experiment, until=day1 + timedelta(hours=23, minutes=59), include_segments=False)
    reports.compute_report(experiment, until=day1 + timedelta(days=1, hours=1), include_segments=False)
    assert early.pk != late.pk
    assert analyst.get(f"{URL}?at={day1.date()}").json()["snapshot_id"] == late.pk
    before = analyst.get(f"{URL}?at={(day1 - timedelta(days=1)).date()}")
    assert before.status_code == 404
    assert analyst.get(f"{URL}?at=2026-02-30").status_code == 400


@pytest.mark.parametrize("path", [
    URL, URL + ".csv", "/api/v1/tasks/abc", "/api/v1/sample-size?baseline=0.1&mde=0.1",
])
def test_unknown_query_parameters_are_named_in_a_400(analyst, running, path):
    sep = "&" if "?" in path else "?"
    r = analyst.get(f"{path}{sep}form=2026-01-01&zz=1")
    assert r.status_code == 400
    body = r.json()
    assert {"form", "zz"} <= set(body) and "form, zz" in body["detail"]
    assert r["Content-Type"] == "application/json"


def test_unknown_query_parameter_on_refresh_and_page_exports(analyst, running, client, django_user_model):
    assert analyst.post(f"{URL}/refresh?phse=1").json().keys() >= {"phse"}
    user = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    for path in ("export.csv", "export.json"):
        r = client.get(f"/reports/checkout/{path}?frm=2026-01-01")
        assert r.status_code == 400 and "frm" in r.json(), path
    ok = client.get(f"/reports/checkout/export.json?from={_day(running[1].start).date()}")
    assert ok.status_code == 200 and ok.json()["snapshot_id"] is None
