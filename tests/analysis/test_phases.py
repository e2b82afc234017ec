"""Per-phase analysis: assign -> events -> report per phase, ?phase= in results/CSV/pages."""
from __future__ import annotations

import csv
import io
import json

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from analysis import reports
from analysis.models import Event, ReportSnapshot
from assignment import exposures, runtime
from assignment.models import Exposure
from experiments.phases import start_new_phase

from .reporting import make_experiment

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _in_process_exposures(settings):
    settings.REDIS_URL = None
    runtime.reset()
    exposures.local_buffer.take()
    yield
    runtime.reset()
    exposures.local_buffer.take()


def _assign(client, unit: str, platform: str = "ios") -> dict:
    body = {"unit_id": unit, "attributes": {"platform": platform}, "experiments": ["checkout"]}
    r = client.post("/api/v1/assignments", data=json.dumps(body), content_type="application/json")
    assert r.status_code == 200, r.content
    return r.json()["assignments"][0]


def _buy(unit: str) -> None:
    Event.objects.create(event_id=f"{unit}-{Event.objects.count()}", unit_id=unit, event="purchase", value=10.0,
                         timestamp=timezone.now())


def _conversions(payload: dict) -> int:
    metric = next(m for m in payload["metrics"] if m["metric"] == "purchase")
    return round(sum(v["mean"] * v["units"] for v in metric["variants"]))


@pytest.fixture
def two_phases(api_client_for):
    """Phase 1: u-0..u-29, 15 buyers. Phase 2 (re-randomised, alpha 0.1): u-20..u-49, 3 buyers."""
    client = api_client_for("client")
    experiment = make_experiment("checkout")
    for i in range(30):
        _assign(client, f"u-{i}")
    exposures.flush()
    for i in [*range(10), *range(20, 25)]:
        _buy(f"u-{i}")
    first = reports.compute_report(experiment)
    start_new_phase(experiment, {"significance_level": 0.1}, rerandomize=True, reason="alpha", actor="pm")
    runtime.reset()
    _buy("u-15")  # a phase-1 unit buying after phase 1 ended: in neither phase
    for i in range(20, 50):
        _assign(client, f"u-{i}")
    exposures.flush()
    _buy("u-25")
    _buy("u-40")
    # u-30 stops matching the targeting: served the fallback, no new exposure...
    answer = _assign(client, "u-30", platform="tv")
    assert (answer["in_experiment"], answer["reason"]) == (False, "targeting")
    _buy("u-30")  # ... but analysed in its first variant of the phase (intention to treat)
    second = reports.compute_report(experiment)
    experiment.refresh_from_db()
    return experiment, first, second


def test_each_phase_is_analysed_on_its_own(two_phases):
    experiment, first, second = two_phases
    assert (first.phase, second.phase) == (1, 2)
    assert sum(first.payload["srm"]["counts"].values()) == 30 and _conversions(first.payload) == 15
    assert first.payload["alpha"] == 0.05 and second.payload["alpha"] == 0.1
    # Phase 2: its 30 units only; the phase-1 purchases of u-20..u-24 do not count, u-30 does.
    assert sum(second.payload["srm"]["counts"].values()) == 30 and _conversions(second.payload) == 3
    assert Exposure.objects.filter(experiment=experiment, phase=2, unit_id="u-30").count() == 1
    p1, p2 = experiment.phases.order_by("number")
    assert second.data_from == p2.started_at and second.payload["phase_started_at"] == p2.started_at.isoformat()
    assert first.payload["phase_ended_at"] is None  # computed while phase 1 ran


def test_an_ended_phase_recomputes_with_its_frozen_plan_and_window(two_phases, admin_api):
    experiment, first, _ = two_phases
    p1 = experiment.phases.get(number=1)
    r = admin_api.post("/api/v1/experiments/checkout/results/refresh?phase=1")
    assert r.status_code == 202, r.content
    again = ReportSnapshot.objects.filter(experiment=experiment, phase=1).latest()
    assert again.pk != first.pk and again.data_to == p1.ended_at == again.computed_at
    assert again.payload["alpha"] == 0.05  # the phase-1 plan, not today's 0.1
    assert _conversions(again.payload) == 15  # u-15 bought after the phase ended
    assert again.payload["phase_ended_at"] == p1.ended_at.isoformat()
    assert admin_api.post("/api/v1/experiments/checkout/results/refresh?phase=9").status_code == 400


def test_results_json_and_csv_take_a_phase(two_phases, api_client_for):
    experiment, first, second = two_phases
    api = api_client_for("analyst")
    base = "/api/v1/experiments/checkout/results"
    assert api.get(base).json()["snapshot_id"] == second.pk  # default: the current phase
    body = api.get(f"{base}?phase=1").json()
    assert (body["snapshot_id"], body["phase"]) == (first.pk, 1)
    for bad in ("3", "0", "x", "-1"):
        r = api.get(f"{base}?phase={bad}")
        assert r.status_code == 400 and "phase" in r.json(), bad
    r = api.get(f"{base}.csv?phase=1")
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert r.status_code == 200 and {row["phase"] for row in rows} == {"1"}
    r = api.get(f"{base}.csv")
    assert {row["phase"] for row in csv.DictReader(io.StringIO(r.content.decode()))} == {"2"}
    assert "-phase2-results-" in r["Content-Disposition"]
    assert api.get(f"{base}.csv?phase=7").status_code == 400


def test_no_report_of_an_earlier_phase_says_how_to_compute_it(api_client_for, admin_api):
    experiment = make_experiment("checkout")
    start_new_phase(experiment, {"cuped": False}, rerandomize=False, reason="r")
    r = api_client_for("analyst").get("/api/v1/experiments/checkout/results?phase=1")
    assert r.status_code == 404 and "/results/refresh?phase=1 " in r.json()["hint"]


def test_cuped_is_not_applied_in_a_phase_that_kept_its_units(api_client_for):
    client = api_client_for("client")
    experiment = make_experiment("checkout")
    start_new_phase(experiment, {"planned_sample_size": 5000}, rerandomize=False, reason="bigger")
    runtime.reset()
    for i in range(10):
        _assign(client, f"u-{i}")
    snapshot = reports.compute_report(experiment)
    assert snapshot.phase == 2 and "CUPED is not applied in phase 2" in snapshot.payload["notes"][0]
    assert not any(v.get("cuped", {}).get("applied") for m in snapshot.payload["metrics"] for v in m["variants"])

def test_report_page_shows_the_notes(two_phases, client):
    experiment, _, _ = two_phases
    start_new_phase(experiment, {"planned_sample_size": 5000}, rerandomize=False, reason="bigger")
    reports.compute_report(experiment)
    client.force_login(User.objects.create_superuser("a", "a@example.com", "pw-for-tests"))
    page = client.get("/reports/checkout/").content.decode()
    assert 'id="report-notes"' in page and "CUPED is not applied in phase 3" in page


def test_report_page_has_a_phase_selector_and_old_phases_stay_readable(two_phases, client):
    experiment, first, second = two_phases
    client.force_login(User.objects.create_superuser("a", "a@example.com", "pw-for-tests"))
    page = client.get("/reports/checkout/").content.decode()
    assert 'id="phase-selector"' in page and 'href="?phase=1"' in page and "re-randomised" in page
    old = client.get("/reports/checkout/?phase=1")
    assert old.context["snapshot"].pk == first.pk and old.context["phase"] == 1
    assert old.context["csv_url"].endswith("?phase=1") and old.context["api_url"].endswith("?phase=1")
    assert 'name="phase" value="1"' in old.content.decode()  # "Recompute now" recomputes phase 1
    bad = client.get("/reports/checkout/?phase=12", follow=True)
    assert bad.status_code == 200 and bad.context["snapshot"].pk == second.pk


def test_starting_a_phase_computes_the_final_report_of_the_previous_one(api_client_for, django_capture_on_commit_callbacks):
    client = api_client_for("client")
    experiment = make_experiment("checkout")
    for i in range(6):
        _assign(client, f"u-{i}")
    with django_capture_on_commit_callbacks(execute=True):
        start_new_phase(experiment, {"significance_level": 0.1}, rerandomize=True, reason="r")
    final = ReportSnapshot.objects.get(experiment=experiment, phase=1)
    p1 = experiment.phases.get(number=1)
    assert final.data_to == p1.ended_at and sum(final.payload["srm"]["counts"].values()) == 6
    assert final.payload["alpha"] == 0.05
