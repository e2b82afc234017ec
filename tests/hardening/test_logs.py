"""No unit id and no API key in any log record at INFO, whatever the request does.

Requests carrying a recognisable unit id (in bodies, query strings and paths) and keys (good,
bad, revoked) go through every API endpoint, succeeding and failing; every record captured at
INFO and above is then searched for them, message and arguments alike.
"""
from __future__ import annotations

import json
import logging

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

UNIT = "unit-7f3a9c-SECRET"
ODD_UNIT = "ü-😀 unit/with?query=1"


@pytest.fixture
def world(api_key):
    from experiments import services
    from experiments.models import Metric

    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    exp = services.create_experiment({
        "key": "logs-exp", "name": "l", "traffic_allocation": 100, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
        "targeting": [{"attribute": "country", "operator": "in", "values": ["CN"]}],
    })
    services.start_experiment(exp)
    return {"client": api_key("client"), "admin": api_key("admin")}


def _client(raw):
    c = APIClient()
    if raw:
        c.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return c


def _traffic(keys):
    """Succeeding and failing requests that all carry the unit ids or keys."""
    from urllib.parse import quote

    client, admin = _client(keys["client"]), _client(keys["admin"])
    bogus = keys["client"].split(".")[0] + ".not-the-secret-part"
    for unit in (UNIT, ODD_UNIT):
        client.post("/api/v1/assignments", {"unit_id": unit, "attributes": {"country": "CN"}}, format="json")
        client.post("/api/v1/assignments", {"unit_id": unit, "experiments": ["nope"]}, format="json")
        client.post("/api/v1/assignments", {"unit_id": unit * 40}, format="json")
        client.get("/api/v1/experiments/logs-exp/assignment", {"unit_id": unit, "country": "CN"})
        client.get("/api/v1/experiments/missing/assignment", {"unit_id": unit})
        client.post("/api/v1/events", {"events": [
            {"event_id": f"e-{unit}", "unit_id": unit, "event": "purchase", "value": 1},
            {"event_id": f"bad-{unit}", "unit_id": unit, "event": "purchase", "value": "NaN-ish"},
        ]}, format="json")
        client.post("/api/v1/events", json.dumps({"events": [{"unit_id": unit}]})[:-3], content_type="application/json")
        admin.delete(f"/api/v1/units/{quote(unit, safe='')}")
        client.delete(f"/api/v1/units/{quote(unit, safe='')}")  # 403: too low a scope
        admin.delete(f"/api/v1/units/{quote(unit * 40, safe='')}")  # 400: too long
    _client(bogus).post("/api/v1/assignments", {"unit_id": UNIT}, format="json")
    _client("garbage-" + keys["admin"]).get("/api/v1/config")
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {keys['admin']}")
    c.get("/api/v1/config")
    from assignment import services as assignment_services

    assignment_services.flush_exposures()


def _secrets(keys) -> list[str]:
    parts = [UNIT, "ü-😀", "unit/with", "not-the-secret-part"]
    for raw in keys.values():
        parts.append(raw.split(".", 1)[1])  # the secret half; the prefix is a public id
    return parts


def test_no_unit_ids_or_keys_in_log_records(world, caplog):
    caplog.set_level(logging.INFO)
    _traffic(world)
    assert caplog.records, "the traffic should have logged something (4xx warnings at least)"
    leaks = []
    for record in caplog.records:
        text = record.getMessage() + " " + repr(record.args)
        if record.exc_text:
            text += record.exc_text
        for secret in _secrets(world):
            if secret in text:
                leaks.append((record.name, record.levelname, text[:200]))
    assert leaks == []


def test_redaction_applies_to_any_handler_not_only_the_console(caplog):
    """Records are cleaned at creation: a handler without RedactFilter (pytest's) sees no id."""
    caplog.set_level(logging.INFO)
    log = logging.getLogger("some.library")
    log.info("GET /api/v1/experiments/x/assignment?unit_id=%s&country=CN", UNIT)
    log.warning("Not Found: /api/v1/units/%s", UNIT)
    log.warning("Forbidden: /api/v1/units/%s", ODD_UNIT)
    log.info('"DELETE /api/v1/units/%s HTTP/1.1" 200 12', "u%20x%2Fy")
    log.info("Authorization: Api-Key %s", "abcd1234.topsecretvalue")
    log.info("Is Redis up? yes")  # an ordinary question mark is left alone
    messages = [r.getMessage() for r in caplog.records]
    assert all(UNIT not in m and "topsecretvalue" not in m and "with" not in m and "%20" not in m for m in messages), messages
    assert '"DELETE /api/v1/units/<redacted> HTTP/1.1" 200 12' in messages
    assert messages[-1] == "Is Redis up? yes"


def test_gunicorn_access_log_is_redacted_too(tmp_path):
    """gunicorn writes its access log through its own handlers; records are redacted at creation."""
    import urllib.error
    import urllib.request

    from .procs import Gunicorn, django_env

    log = tmp_path / "access.log"
    web = Gunicorn(django_env(), workers=1, access_log=log)
    web.access_format = None  # gunicorn's default format, with the request line
    with web:
        for path in (f"/api/v1/experiments/x/assignment?unit_id={UNIT}&country=CN", f"/api/v1/units/{UNIT}"):
            try:
                urllib.request.urlopen(web.url + path, timeout=10)
            except urllib.error.HTTPError as e:
                assert e.code == 401
    lines = log.read_text()
    assert "/api/v1/units/<redacted> HTTP/1.1" in lines and "assignment?<redacted> HTTP/1.1" in lines
    assert UNIT not in lines


# --- issue 10, 7: ids with quotes, decoded paths, encoded paths, query strings --------------------

QUOTED = "o'brien@example.com"
QUOTED_SECRETS = ["brien", "example.com"]


@pytest.mark.parametrize("logger, message", [
    # django.request's warnings end with the decoded path
    ("django.request", "Not Found: /api/v1/units/o'brien@example.com"),
    ("django.request", 'Forbidden: /api/v1/units/say "o\'brien@example.com"'),
    ("django.request", "Method Not Allowed (GET): /api/v1/units/o'brien@example.com HTTP/1.1\" x brien"),
    ("django.request", "Unauthorized: /api/v1/units/a b\no'brien@example.com"),
    ("django.request", "Not Found: /api/v1/units/ü-😀 o'brien@example.com"),
    # request lines (runserver, gunicorn): raw, percent-encoded or not
    ("django.server", "\"DELETE /api/v1/units/o'brien@example.com HTTP/1.1\" 200 12"),
    ("django.server", '"DELETE /api/v1/units/o%27brien%40example.com HTTP/1.1" 200 12'),
    ("django.server", "\"DELETE /api/v1/%75nits%2Fo'brien@example.com HTTP/1.1\" 200 12"),
    ("django.server", '"DELETE /api/v1/UNITS%2fo%27brien%40example.com HTTP/1.1" 404 12'),
    ("gunicorn.access", "1.2.3.4 - - [x] \"GET /api/v1/experiments/e/assignment?unit_id=o'brien@example.com&c=1 HTTP/1.1\" 200 5 \"-\" \"curl\""),
    ("gunicorn.access", '1.2.3.4 - - [x] "GET /api/v1/experiments/e/assignment?unit_id=%22o%27brien%40example.com HTTP/1.1" 200 5'),
    ("gunicorn.access", "1.2.3.4 - - [x] \"GET /api/v1/experiments/e/assignment?unit_id=\"o'brien@example.com\" HTTP/1.1\" 400 5"),
    ("some.library", "GET /x?unit_id=ü-😀-o'brien@example.com"),
    ("some.library", "referer https://app.example/units/o'brien@example.com?x=o'brien"),
])
def test_every_path_form_and_query_string_is_redacted(caplog, logger, message):
    """``o'brien@example.com`` was logged as ``units/<redacted>'brien@example.com``."""
    caplog.set_level(logging.INFO)
    logging.getLogger(logger).warning("%s", message)
    [record] = caplog.records
    text = record.getMessage()
    assert "<redacted>" in text
    for secret in [*QUOTED_SECRETS, "ü-😀"]:
        assert secret not in text, text


def test_request_lines_keep_their_status_after_redaction(caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("django.server").info('"%s" %s %s', "DELETE /api/v1/units/o'brien@example.com HTTP/1.1", 200, 12)
    assert caplog.records[0].getMessage() == '"DELETE /api/v1/units/<redacted> HTTP/1.1" 200 12'


def test_quoted_unit_ids_leave_no_trace_through_the_api(world, caplog):
    """The same id through the endpoints: erasure (200, 403, 405, 401), assignment, events."""
    from urllib.parse import quote

    caplog.set_level(logging.INFO)
    client, admin = _client(world["client"]), _client(world["admin"])
    for path in (f"/api/v1/units/{QUOTED}", f"/api/v1/units/{quote(QUOTED, safe='')}",
                 f"/api/v1/%75nits%2F{quote(QUOTED, safe='')}", "/api/v1/units/ü-😀 " + QUOTED):
        admin.delete(path)
        client.delete(path)
        admin.get(path)
        _client(None).delete(path)
    client.get("/api/v1/experiments/missing/assignment", {"unit_id": QUOTED})
    client.post("/api/v1/assignments", {"unit_id": QUOTED * 30}, format="json")
    client.post("/api/v1/events", {"events": [{"event_id": QUOTED, "unit_id": QUOTED, "event": "x y"}]}, format="json")
    assert caplog.records
    leaks = [r.getMessage() for r in caplog.records if any(s in r.getMessage() + repr(r.args) for s in QUOTED_SECRETS)]
    assert leaks == []


def test_tracebacks_are_redacted_too(caplog):
    """The message of a logged exception may quote the path (e.g. a Resolver404)."""
    caplog.set_level(logging.INFO)
    try:
        raise ValueError(f"no route for /api/v1/units/{QUOTED}?unit_id={QUOTED}")
    except ValueError:
        logging.getLogger("django.request").exception("Internal Server Error: /api/v1/units/%s", QUOTED)
    [record] = caplog.records
    assert "ValueError: no route for /api/v1/units/<redacted>" in record.exc_text
    assert not any(s in record.exc_text + record.getMessage() + caplog.text for s in QUOTED_SECRETS)
