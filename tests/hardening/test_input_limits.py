"""No single hostile value reaches storage or crashes a view (issue 10: 1, 2, 9, 11).

Each class of value found by the audit, on every JSON entry point that stores or evaluates it:
numbers that overflow to infinity (``1e400``), ``NaN``/``Infinity`` literals, event values whose
square overflows a double, nesting deep enough to exhaust the stack, bodies over 2 MiB. Every
one is a 4xx JSON answer naming what is wrong, and nothing is stored.
"""
from __future__ import annotations

import io
import json

import pytest

pytestmark = pytest.mark.django_db


def deep(levels: int, leaf: str = "1") -> str:
    return "[" * levels + leaf + "]" * levels


@pytest.fixture
def world(api_client_for):
    from assignment import exposures, runtime
    from experiments import services
    from experiments.models import Metric

    runtime.reset()
    exposures.local_buffer.take()
    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    Metric.objects.create(key="revenue", name="Revenue", event="purchase", kind="sum")
    exp = services.create_experiment({
        "key": "limits", "name": "limits", "traffic_allocation": 100, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    })
    services.start_experiment(exp)
    yield {"client": api_client_for("client"), "admin": api_client_for("admin")}
    runtime.reset()
    exposures.local_buffer.take()


def exposures_written() -> int:
    from assignment import services
    from assignment.models import Exposure

    services.flush_exposures()
    return Exposure.objects.count()


def experiment_body(key: str, **extra) -> dict:
    return {"key": key, "name": key,
            "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
            "metrics": [{"metric": "purchase", "role": "primary"}], **extra}


# --- 1. numbers that overflow -----------------------------------------------------------------

@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400])
def test_an_overflowing_attribute_is_a_400_naming_it_and_nothing_is_queued(world, number):
    """Was a 200 whose exposure (with ``inf``) jammed the exposure queue."""
    raw = '{"unit_id": "p", "attributes": {"x": NUMBER, "country": "CN"}}'.replace("NUMBER", number)
    r = world["client"].post("/api/v1/assignments", raw, content_type="application/json")
    assert r.status_code == 400, r.content
    assert list(r.json()["attributes"]) == ["x"]
    assert "finite" in r.json()["attributes"]["x"][0]
    assert exposures_written() == 0
    ok = world["client"].post("/api/v1/assignments", {"unit_id": "p", "attributes": {"x": 1e300}}, format="json")
    assert ok.status_code == 200 and exposures_written() == 1  # finite extremes still pass


@pytest.mark.parametrize("path, raw", [
    ("/api/v1/assignments", '{"unit_id": "p", "attributes": {"x": NaN}}'),
    ("/api/v1/assignments", '{"unit_id": "p", "attributes": {"x": -Infinity}}'),
    ("/api/v1/events", '{"events": [{"event_id": "e", "unit_id": "u", "event": "purchase", "value": Infinity}]}'),
    ("/api/v1/experiments", '{"key": "nan-exp", "name": "n", "variants": [{"key": "a", "weight": NaN}]}'),
    ("/api/v1/metrics", '{"key": "m", "name": "m", "event": "purchase", "kind": "sum", "cap": NaN}'),
    ("/api/v1/layers", '{"key": "l", "name": "l", "holdout_percent": Infinity}'),
    ("/api/v1/experiments/limits/complete", '{"shipped_variant": NaN}'),
])
def test_nan_and_infinity_literals_are_refused_at_parse_time(world, path, raw):
    from analysis.models import Event

    r = world["admin"].post(path, raw, content_type="application/json")
    assert r.status_code == 400, (path, r.status_code, r.content[:200])
    assert "is not valid JSON" in r.json()["detail"]
    assert Event.objects.count() == 0


def test_variant_payload_and_targeting_values_must_be_finite(world):
    raw = json.dumps(experiment_body("inf-exp", targeting=[{"attribute": "age", "operator": "gt", "values": [1]}]))
    raw = raw.replace('"is_control": true}', '"is_control": true, "payload": {"a": [1, 1e400]}}', 1)
    raw = raw.replace('"values": [1]', '"values": [1e999]')
    r = world["admin"].post("/api/v1/experiments", raw, content_type="application/json")
    assert r.status_code == 400, r.content
    assert r.json() == {"variants[0].payload.a[1]": [
        "Must be a finite number (NaN, Infinity and numbers beyond 1.8e308 are not JSON)."]}
    r = world["admin"].post("/api/v1/experiments", raw.replace("1e400", "1"), content_type="application/json")
    assert r.status_code == 400 and list(r.json()) == ["targeting[0].values[0]"]


@pytest.mark.parametrize("path, body, field", [
    ("/api/v1/metrics", '{"key": "m", "name": 1e400, "event": "purchase", "kind": "sum"}', "name"),
    ("/api/v1/layers", '{"key": "l", "name": "l", "description": -1e999}', "description"),
    ("/api/v1/experiments/limits", '{"hypothesis": 1e400}', "hypothesis"),
])
def test_an_overflowing_number_is_not_stored_as_the_text_inf(world, path, body, field):
    """DRF stores a number given for a text field as its text: 1e400 became the name "inf"."""
    method = world["admin"].patch if path.endswith("/limits") else world["admin"].post
    r = method(path, body, content_type="application/json")
    assert r.status_code == 400 and list(r.json()) == [field], r.content


def test_services_refuse_non_finite_and_too_deep_payloads_from_any_caller():
    """Admin, API and tasks share ``experiments.services``; a payload built in Python (no parser
    on the way) 5,000 levels deep is a message, not a RecursionError."""
    from django.core.exceptions import ValidationError

    from experiments import services

    payload: dict = {}
    node = payload
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    for bad in (payload, {"x": float("nan")}, {"x": 10**400}):
        with pytest.raises(ValidationError) as caught:
            services.validate_variants([{"key": "a", "weight": 50, "is_control": True, "payload": bad},
                                        {"key": "b", "weight": 50}])
        assert "Variant 'a': the payload is not storable JSON" in str(caught.value)


def test_the_validator_names_the_path_and_counts_depth_and_items():
    from access import jsonsafety

    assert jsonsafety.problem({"a": [1, {"b": float("inf")}]}) == ("a[1].b", jsonsafety.NOT_FINITE)
    assert jsonsafety.problem(json.loads(deep(32))) is None
    assert jsonsafety.problem(json.loads(deep(33)))[1] == jsonsafety.TOO_DEEP
    assert jsonsafety.problem(list(range(10_001)))[1] == jsonsafety.TOO_MANY
    assert jsonsafety.problem({"big": 10**308, "small": -1e308, "t": True}) is None
    assert not jsonsafety.depth_exceeds(json.loads(deep(32)))
    assert jsonsafety.depth_exceeds(json.loads(deep(33)))


# --- 2. event values ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [1e200, -1e16, 1e15 * 1.0000001, 10**20, 1e308])
def test_event_values_beyond_1e15_are_rejected_by_index(world, value):
    """An event of 1e200 was stored and broke every later report (its square overflows)."""
    from analysis.models import Event

    events = [
        {"event_id": "ok-1", "unit_id": "u", "event": "purchase", "value": 1e15},
        {"event_id": "bad", "unit_id": "u", "event": "purchase", "value": value},
        {"event_id": "ok-2", "unit_id": "u", "event": "purchase", "value": -1e15},
    ]
    r = world["client"].post("/api/v1/events", {"events": events}, format="json")
    assert r.status_code == 202, r.content
    assert r.json()["rejected"] == [{"index": 1, "errors": {"value": ["Must be a finite number from -1e15 to 1e15."]}}]
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["ok-1", "ok-2"]


@pytest.mark.parametrize("raw", ['{"events": [], "x": 1e400}', '{"events": 1e400}', "1e400"])
def test_a_number_beyond_a_double_outside_the_events_is_refused(world, raw):
    """Found by tests/fuzz/test_hostile_values.py: an unknown member holding 1e400 was ignored
    (202) instead of refused like in every other body."""
    r = world["client"].post("/api/v1/events", raw, content_type="application/json")
    assert r.status_code == 400 and "finite" in str(r.json()), r.content


def test_import_events_applies_the_same_bounds_and_survives_hostile_cells(tmp_path):
    from django.core.management import call_command

    from analysis.models import Event

    deep_cell = '"' + ('{"a":' * 5000 + "1" + "}" * 5000).replace('"', '""') + '"'
    rows = [
        "event_id,unit_id,event,value,timestamp,properties",
        "e1,u1,purchase,12.5,2026-11-24T10:00:00Z,",
        "e2,u1,purchase,1e200,2026-11-24T10:00:00Z,",
        "e3,u1,purchase,inf,2026-11-24T10:00:00Z,",
        "e4,u1,purchase,nan,2026-11-24T10:00:00Z,",
        'e5,u1,purchase,1,2026-11-24T10:00:00Z,"{""x"": NaN}"',
        f"e6,u1,purchase,1,2026-11-24T10:00:00Z,{deep_cell}",
        "e7,u1,purchase,-1e15,2026-11-24T10:00:00Z,",
    ]
    path = tmp_path / "events.csv"
    path.write_text("\n".join(rows) + "\n")
    out = io.StringIO()
    call_command("import_events", str(path), "--no-progress", stdout=out, stderr=io.StringIO())
    assert sorted(Event.objects.values_list("event_id", flat=True)) == ["e1", "e7"]
    text = out.getvalue()
    assert "2 accepted, 0 duplicates, 5 rejected" in text
    assert "value: Must be a finite number from -1e15 to 1e15." in text and "(lines 3)" in text


# --- 9. deep nesting ---------------------------------------------------------------------------

@pytest.mark.parametrize("path, template", [
    ("/api/v1/assignments", '{"unit_id": "p", "attributes": %s}'),
    ("/api/v1/flags/evaluate", '{"unit_id": "p", "flags": %s}'),
    ("/api/v1/events", '{"events": %s}'),
    ("/api/v1/experiments", '{"key": %s}'),
    ("/api/v1/metrics", '{"key": "m", "name": %s}'),
    ("/api/v1/layers", '{"key": "l", "name": %s}'),
    ("/api/v1/experiments/limits", '{"name": %s}'),
])
@pytest.mark.parametrize("levels", [33, 5000, 30_000])
def test_deep_nesting_is_a_400_at_parse_time(world, path, template, levels):
    """About 5,000 levels answered 500 (RecursionError in the parser)."""
    method = world["admin"].patch if path.endswith("/limits") else world["admin"].post
    r = method(path, template % deep(levels), content_type="application/json")
    assert r.status_code == 400, (path, levels, r.status_code, r.content[:200])
    assert r.json() == {"detail": "JSON parse error - Nested deeper than 32 levels of arrays and objects."}


def test_nesting_up_to_the_limit_still_parses():
    from access.parsers import SafeJSONParser

    parser = SafeJSONParser()
    assert parser.parse(io.BytesIO(deep(32).encode())) == json.loads(deep(32))


def test_a_variant_payload_600_levels_deep_is_a_400(world):
    from experiments.models import Experiment

    raw = json.dumps(experiment_body("deep-exp")).replace(
        '"is_control": true}', '"is_control": true, "payload": {"a": ' + deep(600) + "}}", 1)
    r = world["admin"].post("/api/v1/experiments", raw, content_type="application/json")
    assert r.status_code == 400, r.content[:200]
    assert not Experiment.objects.filter(key="deep-exp").exists()
    shallow = json.dumps(experiment_body("deep-exp")).replace(
        '"is_control": true}', '"is_control": true, "payload": {"a": ' + deep(20) + "}}", 1)
    assert world["admin"].post("/api/v1/experiments", shallow, content_type="application/json").status_code == 201


# --- 11. bodies over 2 MiB -----------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("post", "/api/v1/experiments"), ("patch", "/api/v1/experiments/limits"), ("post", "/api/v1/metrics"),
    ("post", "/api/v1/layers"), ("post", "/api/v1/experiments/limits/complete"), ("post", "/api/v1/events"),
    ("post", "/api/v1/assignments"), ("post", "/api/v1/flags/evaluate"),
])
def test_a_body_over_the_limit_is_a_json_413(world, method, path):
    """The definition endpoints answered Django's HTML "Bad Request (400)" page."""
    raw = json.dumps({"name": "x" * (2 * 1024 * 1024 + 10)})
    r = getattr(world["admin"], method)(path, raw, content_type="application/json")
    assert r.status_code == 413, (path, r.status_code, r.content[:200])
    assert r["Content-Type"] == "application/json" and "is over" in r.json()["detail"]


def test_the_parser_also_bounds_a_body_without_a_declared_length(settings):
    """A chunked body has no Content-Length for Django to check: the parser stops reading."""
    from access.limits import BodyTooLarge
    from access.parsers import SafeJSONParser

    settings.API_MAX_BODY_BYTES = 1000
    with pytest.raises(BodyTooLarge):
        SafeJSONParser().parse(io.BytesIO(b'{"a": "' + b"x" * 2000 + b'"}'), parser_context={})
    assert SafeJSONParser().parse(io.BytesIO(b'{"a": "x"}'), parser_context={}) == {"a": "x"}


def test_a_unit_id_with_a_newline_can_be_erased(world):
    """The assignment API takes any text as a unit id; erasure answered 404 for one with "\\n"."""
    from analysis.models import Event

    unit = "o'brien\n@example.com"
    world["client"].post("/api/v1/events", {"events": [{"event_id": "nl", "unit_id": unit, "event": "purchase"}]},
                         format="json")
    assert Event.objects.filter(unit_id=unit).count() == 1
    r = world["admin"].delete("/api/v1/units/o%27brien%0A%40example.com")
    assert r.status_code == 200 and r.json()["unit_id"] == unit and r.json()["deleted"]["events"] == 1


@pytest.mark.parametrize("request_kwargs", [
    {"path": "/api/v1/config", "HTTP_HOST": "evil.example"},  # DisallowedHost
    {"path": "/api/v1/experiments/limits/assignment?unit_id=u&" + "&".join(f"a{i}=1" for i in range(1001))},
])
def test_django_s_own_400s_are_json_under_the_api(world, request_kwargs):
    """Django answers a suspicious request (a host not allowed, over 1,000 query fields) with
    its handler400, which served an HTML page under /api/ too."""
    kwargs = dict(request_kwargs)
    r = world["client"].get(kwargs.pop("path"), **kwargs)
    assert r.status_code == 400 and r["Content-Type"] == "application/json", (r.status_code, r.content[:200])
    assert r.json() == {"detail": "Bad request."}
