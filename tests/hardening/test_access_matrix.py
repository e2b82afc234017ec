"""Who may call what: every API operation x every kind of caller gives the documented status.

The operations are discovered from the URL resolver, so an endpoint that lands without an entry
in ``ACCESS`` fails ``test_every_endpoint_is_in_the_access_table``. The same table is printed in
docs/operations.md ("Access"); keep the two identical.

Callers: no key, a revoked key, an expired key (all 401 with ``WWW-Authenticate: Api-Key``),
then client < analyst < admin: below the operation's scope 403, at or above it anything but
401/403 (2xx, or a 4xx about the request itself) and never a 5xx.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from .endpoints import api_operations

pytestmark = pytest.mark.django_db

#: The minimum scope of every API operation (client < analyst < admin).
ACCESS: dict[tuple[str, str], str] = {
    # client applications: assign, send events, size an experiment
    ("POST", "/api/v1/assignments"): "client",
    ("GET", "/api/v1/experiments/{key}/assignment"): "client",
    ("GET", "/api/v1/config"): "client",
    ("POST", "/api/v1/events"): "client",
    ("POST", "/api/v1/exposures"): "client",
    ("POST", "/api/v1/flags/evaluate"): "client",
    ("GET", "/api/v1/sample-size"): "client",
    # analysts: read definitions and results, recompute a report
    ("GET", "/api/v1/experiments"): "analyst",
    ("GET", "/api/v1/experiments/{key}"): "analyst",
    ("GET", "/api/v1/experiments/{key}/history"): "analyst",
    ("GET", "/api/v1/metrics"): "analyst",
    ("GET", "/api/v1/metrics/{key}"): "analyst",
    ("GET", "/api/v1/layers"): "analyst",
    ("GET", "/api/v1/layers/{key}"): "analyst",
    ("GET", "/api/v1/experiments/{key}/results"): "analyst",
    ("GET", "/api/v1/experiments/{key}/phases"): "analyst",
    ("GET", "/api/v1/experiments/{key}/results.csv"): "analyst",
    ("POST", "/api/v1/experiments/{key}/results/refresh"): "analyst",
    ("GET", "/api/v1/tasks/{task_id}"): "analyst",
    ("GET", "/api/v1/experiments/{key}/approvals"): "analyst",
    # flags, audiences, environments (definitions: analysts read, admins change)
    ("GET", "/api/v1/flags"): "analyst",
    ("GET", "/api/v1/flags/{key}"): "analyst",
    ("GET", "/api/v1/flags/{key}/history"): "analyst",
    ("GET", "/api/v1/audiences"): "analyst",
    ("GET", "/api/v1/audiences/{key}"): "analyst",
    ("GET", "/api/v1/audiences/{key}/history"): "analyst",
    ("GET", "/api/v1/environments"): "analyst",
    ("GET", "/api/v1/environments/{key}"): "analyst",
    ("GET", "/api/v1/experiments/{key}/audiences"): "analyst",
    # admins: change definitions, run experiments, erase a unit's data
    ("POST", "/api/v1/experiments"): "admin",
    ("PATCH", "/api/v1/experiments/{key}"): "admin",
    ("POST", "/api/v1/experiments/{key}/start"): "admin",
    ("POST", "/api/v1/experiments/{key}/pause"): "admin",
    ("POST", "/api/v1/experiments/{key}/resume"): "admin",
    ("POST", "/api/v1/experiments/{key}/complete"): "admin",
    ("POST", "/api/v1/experiments/{key}/archive"): "admin",
    ("POST", "/api/v1/experiments/{key}/phases"): "admin",
    ("POST", "/api/v1/metrics"): "admin",
    ("POST", "/api/v1/layers"): "admin",
    ("DELETE", "/api/v1/units/{unit_id}"): "admin",
    ("POST", "/api/v1/experiments/{key}/approvals"): "admin",
    ("POST", "/api/v1/approvals/{approval_id}/approve"): "admin",
    ("POST", "/api/v1/approvals/{approval_id}/reject"): "admin",
    ("POST", "/api/v1/flags"): "admin",
    ("PATCH", "/api/v1/flags/{key}"): "admin",
    ("DELETE", "/api/v1/flags/{key}"): "admin",
    ("PUT", "/api/v1/flags/{key}/environments/{environment}"): "admin",
    ("POST", "/api/v1/audiences"): "admin",
    ("PATCH", "/api/v1/audiences/{key}"): "admin",
    ("DELETE", "/api/v1/audiences/{key}"): "admin",
    ("POST", "/api/v1/environments"): "admin",
    ("PUT", "/api/v1/experiments/{key}/audiences"): "admin",
    ("PUT", "/api/v1/experiments/{key}/environments/{environment}"): "admin",
}
RANK = {"client": 1, "analyst": 2, "admin": 3}
CALLERS = ("none", "revoked", "expired", "client", "analyst", "admin")

#: Plausible requests, so allowed callers reach the view's real work (not only validation).
PATH_VALUES = {"key": "matrix-exp", "unit_id": "matrix-unit", "task_id": "no-such-task", "approval_id": "1",
               "environment": "staging"}
BODIES = {
    ("POST", "/api/v1/assignments"): {"unit_id": "u-1", "attributes": {"country": "CN"}},
    ("POST", "/api/v1/flags/evaluate"): {"unit_id": "u-1", "attributes": {"country": "CN"}},
    ("POST", "/api/v1/events"): {"events": [{"event_id": "matrix-1", "unit_id": "u-1", "event": "purchase", "value": 1}]},
    ("POST", "/api/v1/experiments"): {
        "key": "matrix-new", "name": "n", "variants": [
            {"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}]},
    ("PATCH", "/api/v1/experiments/{key}"): {"description": "changed"},
    ("POST", "/api/v1/experiments/{key}/phases"): {"changes": {"cuped": False}, "reason": "matrix"},
    ("POST", "/api/v1/metrics"): {"key": "matrix-metric", "name": "m", "event": "click", "kind": "count"},
    ("POST", "/api/v1/layers"): {"key": "matrix-layer", "name": "l"},
    ("POST", "/api/v1/experiments/{key}/approvals"): {"action": "complete", "shipped_variant": "b"},
    ("POST", "/api/v1/flags"): {"key": "matrix-flag", "name": "f", "type": "boolean", "default": False},
    ("PATCH", "/api/v1/flags/{key}"): {"description": "changed"},
    ("PUT", "/api/v1/flags/{key}/environments/{environment}"): {
        "enabled": True, "rules": [{"type": "rollout", "value": True, "percent": 10}]},
    ("POST", "/api/v1/audiences"): {"key": "matrix-audience", "name": "a", "match": "all", "conditions": []},
    ("PATCH", "/api/v1/audiences/{key}"): {"description": "changed"},
    ("POST", "/api/v1/environments"): {"key": "matrix-env", "name": "e"},
    ("PUT", "/api/v1/experiments/{key}/audiences"): {"audiences": ["matrix-exp"]},
    ("PUT", "/api/v1/experiments/{key}/environments/{environment}"): {"enabled": False},
}
QUERIES = {
    ("GET", "/api/v1/experiments/{key}/assignment"): {"unit_id": "u-1", "country": "CN"},
    ("GET", "/api/v1/sample-size"): {"baseline": "0.1", "mde": "0.1"},
}


def test_every_endpoint_is_in_the_access_table():
    discovered = set(api_operations())
    assert discovered - set(ACCESS) == set(), "new endpoints: add them to ACCESS and docs/operations.md"
    assert set(ACCESS) - discovered == set(), "ACCESS lists endpoints that no longer exist"


def test_the_documented_table_matches():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for (method, path), scope in ACCESS.items():
        assert f"| `{method} {path}` | {scope} |" in doc, f"{method} {path} missing from docs/operations.md"


@pytest.fixture
def callers(api_key):
    from access.models import APIKey
    from access.services import create_api_key, revoke_api_key
    from experiments import services
    from experiments.models import Metric

    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    exp = services.create_experiment({
        "key": "matrix-exp", "name": "m", "traffic_allocation": 100, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    })
    services.start_experiment(exp)
    from experiments import audiences, flags
    from experiments.models import Audience

    flags.create_flag({"key": "matrix-exp", "name": "f", "value_type": "boolean", "default_value": False})
    audiences.save_audience(Audience(), {"key": "matrix-exp", "name": "a"})
    revoked_obj, revoked = create_api_key("revoked", "admin")
    revoke_api_key(APIKey.objects.get(pk=revoked_obj.pk))
    _, expired = create_api_key("expired", "admin", expiry_date=timezone.now() - timedelta(seconds=1))
    keys = {"none": None, "revoked": revoked, "expired": expired,
            "client": api_key("client"), "analyst": api_key("analyst"), "admin": api_key("admin")}
    return keys


def _call(raw_key: str | None, method: str, template: str):
    client = APIClient()
    if raw_key:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    path = template
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    key = (method, template)
    if method == "GET":
        return client.get(path, QUERIES.get(key, {}))
    body = BODIES.get(key)
    data = json.dumps(body) if body is not None else None
    return client.generic(method, path, data or "", content_type="application/json")


@pytest.mark.parametrize("operation", sorted(ACCESS), ids=lambda op: f"{op[0]} {op[1]}")
def test_access_matrix(callers, operation):
    method, template = operation
    needed = ACCESS[operation]
    for caller in CALLERS:
        r = _call(callers[caller], method, template)
        assert r.status_code < 500, (caller, r.status_code, r.content[:300])
        if caller in ("none", "revoked", "expired"):
            assert r.status_code == 401, (caller, r.status_code)
            assert r["WWW-Authenticate"] == "Api-Key"
            assert r.json()["detail"]
        elif RANK[caller] < RANK[needed]:
            assert r.status_code == 403, (caller, r.status_code, r.content[:200])
            assert needed in r.json()["detail"]
        else:
            assert r.status_code not in (401, 403), (caller, r.status_code, r.content[:200])


def test_a_logged_in_admin_session_is_not_an_api_credential(client):
    """The API authenticates keys only: a browser session cannot be used for CSRF against it."""
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("boss", "b@example.com", "pw-for-tests"))
    assert client.get("/api/v1/experiments").status_code == 401
    r = client.post("/api/v1/metrics", {"key": "x", "name": "x", "event": "e"}, content_type="application/json")
    assert r.status_code == 401


@pytest.mark.parametrize("header", [
    "Api-Key", "Api-Key ", "api-key abc", "Bearer x.y", "Api-Key a.b.c", "Api-Key " + "é" * 40,
    "Api-Key \x7f.\x01", "Api-Key " + "k" * 10_000, "Basic YWRtaW46YWRtaW4=",
])
def test_malformed_credentials_are_401_json(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    r = client.post("/api/v1/assignments", {"unit_id": "u"}, format="json")
    assert r.status_code == 401 and r.json()["detail"]
