"""Results API: JSON and CSV results, refresh + task state, sample size; responses match the schema."""
from __future__ import annotations

import copy
import csv
import io
from datetime import timedelta
from urllib.parse import quote

import pytest
from drf_spectacular.generators import SchemaGenerator
from jsonschema import Draft202012Validator

from analysis import reports
from analysis.models import ReportSnapshot
from analysis.stats import sample_size

from .reporting import make_experiment, populate

pytestmark = pytest.mark.django_db


# --- responses against the OpenAPI schema ------------------------------------------------------------

def _nullable_to_jsonschema(node):
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema ``anyOf [.., null]`` (recursively)."""
    if isinstance(node, list):
        return [_nullable_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable_to_jsonschema(v) for k, v in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


@pytest.fixture(scope="module")
def openapi():
    return _nullable_to_jsonschema(SchemaGenerator().get_schema(request=None, public=True))


def conforms(openapi, path: str, method: str, response) -> None:
    """Fail unless ``response`` is documented for the operation and its JSON body matches."""
    operation = openapi["paths"][path][method.lower()]
    documented = operation["responses"]
    assert str(response.status_code) in documented, f"{response.status_code} undocumented for {method} {path}"
    content = documented[str(response.status_code)].get("content", {})
    media = response["Content-Type"].split(";")[0]
    assert media in content, f"{media} not documented for {response.status_code}"
    if media != "application/json":
        return
    schema = copy.deepcopy(content[media]["schema"])
    validator = Draft202012Validator({**schema, "components": openapi["components"]})
    errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


RESULTS = "/api/v1/experiments/{key}/results"


@pytest.fixture
def analyst(api_client_for):
    return api_client_for("analyst")


@pytest.fixture
def computed():
    experiment = make_experiment()
    populate(experiment, units=1500, lift=0.3)
    return experiment, reports.compute_report(experiment)


def test_results_before_any_report_is_a_404_with_a_hint(analyst, openapi):
    make_experiment()
    r = analyst.get("/api/v1/experiments/checkout/results")
    assert r.status_code == 404
    assert "refresh" in r.json()["hint"]
    conforms(openapi, RESULTS, "GET", r)
    assert analyst.get("/api/v1/experiments/nope/results").status_code == 404


def test_scopes(api_client_for, computed):
    url = "/api/v1/experiments/checkout/results"
    assert api_client_for(None).get(url).status_code == 401
    assert api_client_for("client").get(url).status_code == 403
    assert api_client_for("client").post(url + "/refresh").status_code == 403
    assert api_client_for("analyst").get(url).status_code == 200
    assert api_client_for("admin").get(url).status_code == 200
    assert api_client_for("client").get("/api/v1/sample-size?baseline=0.1&mde=0.1").status_code == 200
    assert api_client_for(None).get("/api/v1/sample-size?baseline=0.1&mde=0.1").status_code == 401


def test_latest_results_body(analyst, computed, openapi):
    _, snapshot = computed
    r = analyst.get("/api/v1/experiments/checkout/results")
    assert r.status_code == 200
    conforms(openapi, RESULTS, "GET", r)
    body = r.json()
    assert body["experiment"] == "checkout" and body["snapshot_id"] == snapshot.pk
    assert body["computed_at"] == snapshot.computed_at.isoformat().replace("+00:00", "Z")
    assert body["srm"]["counts"] == snapshot.payload["srm"]["counts"]
    purchase = body["metrics"][0]
    assert purchase["metric"] == "purchase" and purchase["role"] == "primary"
    green = next(v for v in purchase["variants"] if v["variant"] == "green")
    assert set(green["lift"]) == {"absolute", "relative", "ci_absolute", "ci_relative"}
    assert {"p_value", "p_value_adjusted", "chance_to_beat_control"} <= set(green)
    assert body["decision"]["recommendation"] and body["decision"]["reasons"]
    assert set(body["segments"]) >= {"country", "platform", "plan"}
    assert body["daily_exposures"][0].keys() == {"date", "variant", "units"}
    assert body["power"]["planned_sample_size"] == 4000


def test_at_selects_an_earlier_snapshot(analyst, openapi):
    experiment = make_experiment()
    result = populate(experiment, units=600, days=4)
    t1 = result.start + timedelta(days=1)
    t2 = result.start + timedelta(days=3)
    first = reports.compute_report(experiment, until=t1, include_segments=False)
    second = reports.compute_report(experiment, until=t2, include_segments=False)
    url = "/api/v1/experiments/checkout/results"

    def at(value):
        return analyst.get(f"{url}?at={quote(value)}")

    assert at((t1 + timedelta(hours=1)).isoformat()).json()["snapshot_id"] == first.pk
    assert at(t2.isoformat()).json()["snapshot_id"] == second.pk  # "at or before"
    assert at(t2.strftime("%Y-%m-%dT%H:%M:%SZ")).json()["snapshot_id"] == second.pk
    # An unencoded '+' of the offset arrives as a space: still understood.
    plain = analyst.get(f"{url}?at={(t1 + timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M:%S')}+00:00")
    assert plain.json()["snapshot_id"] == first.pk
    before = at((t1 - timedelta(seconds=1)).isoformat())
    assert before.status_code == 404 and "at or before" in before.json()["detail"]
    for bad in ("yesterday", "2026-13-01T00:00:00Z", "2026-02-30", "2026-01-01T00:00:00", ""):
        r = at(bad)
        assert r.status_code == 400 and "at" in r.json(), bad
        conforms(openapi, RESULTS, "GET", r)


def test_csv_export(analyst, computed, openapi):
    _, snapshot = computed
    r = analyst.get("/api/v1/experiments/checkout/results.csv")
    assert r.status_code == 200
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in r["Content-Disposition"] and ".csv" in r["Content-Disposition"]
    conforms(openapi, RESULTS + ".csv", "GET", r)
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    overall = [row for row in rows if row["section"] == "overall"]
    assert len(overall) == 3 * 2  # metrics x variants
    green = next(row for row in overall if row["metric"] == "purchase" and row["variant"] == "green")
    payload_green = snapshot.payload["metrics"][0]["variants"][1]
    assert float(green["p_value"]) == payload_green["p_value"]
    assert float(green["ci_relative_low"]) == payload_green["lift"]["ci_relative"][0]
    segments = [row for row in rows if row["section"] == "segment"]
    assert {row["segment_attribute"] for row in segments} == set(snapshot.payload["segments"])
    assert {row["metric"] for row in segments} == {"purchase", "revenue", "refund"}  # every metric
    # Errors stay JSON even when CSV is asked for.
    missing = analyst.get("/api/v1/experiments/checkout/results.csv?at=2000-01-01T00:00:00Z", HTTP_ACCEPT="text/csv")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"


def test_csv_neutralises_spreadsheet_formulas(analyst):
    experiment = make_experiment(metric_names={"purchase": "=HYPERLINK(\"http://x\")"})
    reports.compute_report(experiment)
    text = analyst.get("/api/v1/experiments/checkout/results.csv").content.decode()
    names = {row["metric_name"] for row in csv.DictReader(io.StringIO(text)) if row["metric"] == "purchase"}
    assert names == {"'=HYPERLINK(\"http://x\")"}


def test_refresh_then_follow_the_task(analyst, openapi):
    experiment = make_experiment()
    populate(experiment, units=400)
    r = analyst.post("/api/v1/experiments/checkout/results/refresh")
    assert r.status_code == 202
    conforms(openapi, RESULTS + "/refresh", "POST", r)
    body = r.json()
    assert body["experiment"] == "checkout" and body["status_url"] == f"/api/v1/tasks/{body['task_id']}"
    status = analyst.get(body["status_url"])
    conforms(openapi, "/api/v1/tasks/{task_id}", "GET", status)
    assert status.json()["state"] == "SUCCESS" and status.json()["ready"] is True
    snapshot = ReportSnapshot.objects.get(task_id=body["task_id"])
    assert status.json()["snapshot_id"] == snapshot.pk
    assert analyst.get(body["results_url"]).json()["snapshot_id"] == snapshot.pk
    assert analyst.post("/api/v1/experiments/nope/results/refresh").status_code == 404


def test_unknown_task_is_a_404(analyst, openapi):
    r = analyst.get("/api/v1/tasks/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404
    conforms(openapi, "/api/v1/tasks/{task_id}", "GET", r)


def test_sample_size_matches_the_engine(api_client_for, openapi):
    client = api_client_for("client")
    r = client.get("/api/v1/sample-size?baseline=0.1&mde=0.05&alpha=0.05&power=0.8")
    assert r.status_code == 200
    conforms(openapi, "/api/v1/sample-size", "GET", r)
    assert r.json() == sample_size(0.1, 0.05, alpha=0.05, power=0.8)
    means = client.get("/api/v1/sample-size?baseline=50&mde=2&relative=false&sd=20&n_variants=3").json()
    assert means == sample_size(50, 2, relative=False, sd=20, n_variants=3)


@pytest.mark.parametrize("query, field", [
    ("mde=0.05", "baseline"),
    ("baseline=abc&mde=0.05", "baseline"),
    ("baseline=0.1&mde=0", "mde"),
    ("baseline=1.5&mde=0.05", "baseline"),
    ("baseline=0.1&mde=0.05&alpha=1.5", "alpha"),
    ("baseline=0.1&mde=0.05&power=0.01&alpha=0.05", "power"),
    ("baseline=0.1&mde=0.05&relative=yes", "relative"),
    ("baseline=0.1&mde=0.05&n_variants=1", "n_variants"),
    ("baseline=0.1&mde=0.05&sd=-1", "sd"),
    ("baseline=5e16&mde=-1e300", "mde"),
    ("baseline=nan&mde=0.1", "baseline"),
])
def test_sample_size_bad_input_names_the_field(api_client_for, openapi, query, field):
    r = api_client_for("client").get(f"/api/v1/sample-size?{query}")
    assert r.status_code == 400 and field in r.json(), r.json()
    conforms(openapi, "/api/v1/sample-size", "GET", r)
