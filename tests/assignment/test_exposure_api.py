"""POST /api/v1/exposures: SDK exposures are re-evaluated, recorded first-wins through the
exposure buffer, rejected by index when invalid or when the server disagrees (counted for the
report), authenticated by header or (sendBeacon) by body; CORS for browsers."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from assignment import runtime, services
from assignment.evaluator import Evaluator
from assignment.models import Exposure
from assignment.selectors import sdk_exposure_checks

URL = "/api/v1/exposures"


@pytest.fixture
def checkout(make_experiment):
    experiment = make_experiment(
        "checkout-button", targeting=[{"attribute": "country", "operator": "in", "values": ["CN", "US"]}]
    )
    from experiments.models import Override

    Override.objects.create(experiment=experiment, unit_id="qa-1", variant=experiment.variants.get(key="green"))
    runtime.reset()
    return experiment


def local(client_api):
    """What an SDK does: fetch the (client) document and evaluate locally."""
    return Evaluator.from_json(client_api.get("/api/v1/config").content)


def exposure(evaluator, unit, attributes=None, **extra):
    answer = evaluator.evaluate("checkout-button", unit, attributes or {"country": "CN"})
    item = {"experiment": "checkout-button", "variant": answer.variant, "unit_id": unit,
            "timestamp": datetime.now(UTC).isoformat(), "attributes": attributes or {"country": "CN"},
            "config_version": evaluator.version}
    item.update(extra)
    return item


def post(client, body, **kwargs):
    return client.post(URL, data=json.dumps(body), content_type=kwargs.pop("content_type", "application/json"), **kwargs)


def test_round_trip_records_first_exposure(client_api, checkout):
    evaluator = local(client_api)
    items = [exposure(evaluator, f"u-{i}") for i in range(50)]
    early = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    items.append(dict(items[0], timestamp=early))  # a retry with an earlier time: first wins
    response = post(client_api, {"exposures": items})
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 51, "rejected": [], "mismatched": 0, "stale": 0}
    services.flush_exposures()
    rows = {e.unit_id: e for e in Exposure.objects.select_related("variant")}
    assert len(rows) == 50
    assert {u: e.variant.key for u, e in rows.items()} == {i["unit_id"]: i["variant"] for i in items}
    assert abs(rows["u-0"].first_seen - datetime.fromisoformat(early)) < timedelta(seconds=1)
    # Sending the same batch again changes nothing (idempotent).
    assert post(client_api, {"exposures": items}).status_code == 202
    services.flush_exposures()
    assert Exposure.objects.count() == 50


def test_partial_rejection_by_index(client_api, checkout):
    evaluator = local(client_api)
    good = exposure(evaluator, "u-1")
    items = [
        good,
        "not an object",
        dict(good, unit_id=""),
        dict(good, unit_id="a\x00b"),
        dict(good, timestamp="yesterday"),
        dict(good, timestamp=(datetime.now(UTC) + timedelta(days=3)).isoformat()),
        dict(good, timestamp=(datetime.now(UTC) - timedelta(days=40)).isoformat()),
        dict(good, experiment="nope"),
        dict(good, variant=7),
        dict(good, attributes={"a": {"nested": 1}}),
        dict(good, config_version=["x"]),
        exposure(evaluator, "u-2"),
    ]
    body = post(client_api, {"exposures": items}).json()
    assert body["accepted"] == 2
    fields = {r["index"]: sorted(r["errors"]) for r in body["rejected"]}
    assert fields == {
        1: ["non_field_errors"], 2: ["unit_id"], 3: ["unit_id"], 4: ["timestamp"], 5: ["timestamp"],
        6: ["timestamp"], 7: ["experiment"], 8: ["variant"], 9: ["attributes"], 10: ["config_version"],
    }


@pytest.mark.parametrize(("body", "field"), [
    ([], "non_field_errors"), ({}, "exposures"), ({"exposures": "x"}, "exposures"),
    ({"exposures": [{}] * 1001}, "exposures"),
])
def test_bad_batches_are_400_naming_the_field(client_api, checkout, body, field):
    response = post(client_api, body)
    assert response.status_code == 400
    assert field in response.json()


def test_not_json_is_400(client_api, checkout):
    response = client_api.post(URL, data=b'{"exposures": [NaN]}', content_type="application/json")
    assert response.status_code == 400


def test_disagreements_are_rejected_counted_and_reported(client_api, checkout):
    evaluator = local(client_api)
    enrolled = next(u for u in (f"u-{i}" for i in range(100))
                    if evaluator.evaluate("checkout-button", u, {"country": "CN"}).reason == "assigned")
    right = exposure(evaluator, enrolled)
    wrong = dict(right, variant="control" if right["variant"] == "green" else "green")
    untargeted = dict(exposure(evaluator, "u-x", {"country": "DE"}), variant="green")
    override = dict(exposure(evaluator, "qa-1"), variant="green")  # overrides are never exposures
    stale = dict(wrong, config_version="0123456789abcdef0123")
    body = post(client_api, {"exposures": [right, wrong, untargeted, override, stale]}).json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3, 4]
    assert (body["mismatched"], body["stale"]) == (3, 1)
    assert all("variant" in r["errors"] for r in body["rejected"])
    checks = sdk_exposure_checks(checkout.pk)
    assert (checks["mismatched"], checks["stale"]) == (3, 1)
    assert "unit_id" not in json.dumps(checks["example"])  # nothing to erase there
    services.flush_exposures()
    assert list(Exposure.objects.values_list("unit_id", flat=True)) == [enrolled]


def test_exposures_checked_against_the_version_they_name(client_api, checkout):
    """A configuration change between the SDK's fetch and its report: the exposure is checked
    against the version it names (still known to this process), so it is not a mismatch."""
    from experiments import services as experiment_services

    old = local(client_api)
    item = exposure(old, "u-7")
    experiment_services.pause_experiment(checkout)
    runtime._checked_at = 0.0  # skip the 1 s check interval
    assert runtime.current().version != runtime.for_version(old.version).version
    body = post(client_api, {"exposures": [item]}).json()
    assert (body["accepted"], body["mismatched"], body["stale"]) == (1, 0, 0)
    # Against the current (paused) configuration alone it would have been refused.
    body = post(client_api, {"exposures": [dict(item, config_version=None)]}).json()
    assert (body["accepted"], body["stale"]) == (0, 1)


def test_report_payload_and_page_show_the_warning(client_api, checkout, client, django_user_model):
    from analysis.reports import compute_report

    evaluator = local(client_api)
    wrong = exposure(evaluator, "u-1", variant="no-such-variant")
    post(client_api, {"exposures": [wrong, wrong]})
    snapshot = compute_report(checkout)
    assert snapshot.payload["sdk_exposures"]["mismatched"] == 2
    user = django_user_model.objects.create_superuser("boss", "b@example.com", "pw")
    client.force_login(user)
    page = client.get(f"/reports/{checkout.key}/").content.decode()
    assert 'id="sdk-exposure-banner"' in page and 'data-mismatched="2"' in page


def test_sendbeacon_body_key_as_text_plain(api_key, checkout, client):
    from rest_framework.test import APIClient

    key = api_key("client")
    evaluator = Evaluator.from_json(
        APIClient(HTTP_AUTHORIZATION=f"Api-Key {key}").get("/api/v1/config").content)
    body = {"api_key": key, "exposures": [exposure(evaluator, "u-1")]}
    response = client.post(URL, data=json.dumps(body), content_type="text/plain;charset=UTF-8")
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 1
    bad = client.post(URL, data=json.dumps(dict(body, api_key="nope")), content_type="text/plain")
    assert bad.status_code == 401
    missing = client.post(URL, data=json.dumps({"exposures": []}), content_type="text/plain")
    assert missing.status_code == 401


@pytest.mark.parametrize("origins", [["https://shop.example"], []])
def test_cors_preflight_needs_no_key(client, settings, origins):
    settings.CORS_ALLOWED_ORIGINS = origins
    for path in ("/api/v1/config", URL, "/api/v1/assignments"):
        response = client.options(path, HTTP_ORIGIN="https://shop.example",
                                  HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                                  HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type,if-none-match")
        assert response.status_code == 200, path
        if origins:
            assert response["Access-Control-Allow-Origin"] == "https://shop.example"
            allowed = response["Access-Control-Allow-Headers"]
            assert {"authorization", "content-type", "if-none-match"} <= set(allowed.split(", "))
        else:
            assert "Access-Control-Allow-Origin" not in response


def test_cors_headers_on_answers_and_exposed_etag(client_api, checkout, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example"]
    response = client_api.get("/api/v1/config", HTTP_ORIGIN="https://shop.example")
    assert response["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "ETag" in response["Access-Control-Expose-Headers"]
    other = client_api.get("/api/v1/config", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in other
    # Not on the admin or the report pages.
    assert "Access-Control-Allow-Origin" not in client_api.get("/reports/", HTTP_ORIGIN="https://shop.example")


@pytest.mark.parametrize("raw", [b"[" * 5000 + b"]" * 5000, b'{"exposures": [{"a": ' * 300 + b"1" + b"}" * 300 + b"]}", b"\xff"])
def test_hostile_bodies_are_400(client_api, checkout, raw):
    response = client_api.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400, response.content


def test_non_finite_attribute_rejects_that_exposure_only(client_api, checkout):
    evaluator = local(client_api)
    good = exposure(evaluator, "u-1")
    raw = json.dumps({"exposures": [good, dict(good, attributes={"age": 1})]}).replace('"age": 1', '"age": 1e400')
    response = client_api.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], sorted(r["errors"])) for r in body["rejected"]] == [(1, ["attributes"])]


def test_non_finite_number_in_an_ignored_field_rejects_that_exposure(client_api, checkout):
    good = exposure(local(client_api), "u-1")
    raw = json.dumps({"exposures": [dict(good, extra=1)]}).replace('"extra": 1', '"extra": 1e400')
    body = client_api.post(URL, data=raw, content_type="application/json").json()
    assert body["accepted"] == 0 and list(body["rejected"][0]["errors"]) == ["extra"]


def test_non_finite_number_outside_the_list_is_400(client_api, checkout):
    response = client_api.post(URL, data=b'{"x": 1e400, "exposures": []}', content_type="application/json")
    assert response.status_code == 400 and "x" in response.json()


def test_non_finite_number_in_an_ignored_assignment_member_is_400(client_api, checkout):
    response = client_api.post("/api/v1/assignments", data=b'{"": 1e400, "unit_id": "u"}',
                               content_type="application/json")
    assert response.status_code == 400, response.content


def test_sdk_exposures_count_in_the_phase_of_the_configuration_they_name(client_api, checkout):
    """Phase 1 exposures stay phase 1 even when reported after phase 2 began (the version they
    name is still known); exposures from the new configuration are phase 2, re-randomised."""
    from django.db import transaction

    from experiments.phases import start_new_phase

    phase1 = local(client_api)
    early = exposure(phase1, "u-1")
    with transaction.atomic():
        start_new_phase(checkout, {}, rerandomize=True, reason="re-randomise")
    runtime._checked_at = 0.0
    phase2 = local(client_api)
    assert phase2.version != phase1.version
    late = exposure(phase2, "u-1")
    body = post(client_api, {"exposures": [early, late]}).json()
    assert (body["accepted"], body["rejected"]) == (2, []), body
    services.flush_exposures()
    rows = {e.phase: e.variant.key for e in Exposure.objects.filter(unit_id="u-1").select_related("variant")}
    assert rows == {1: early["variant"], 2: late["variant"]}
