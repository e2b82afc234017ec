"""Errors are JSON with the right status: bad input is a 4xx even when only the database notices.

PostgreSQL refuses NUL characters in text that SQLite stores; such a value reaching a query
must be the client's 400, not a 503 "retry later" (a retry cannot succeed) nor a 500.
"""
from __future__ import annotations

import pytest
from django.db import DataError, OperationalError

from access.exceptions import json_exception_handler

pytestmark = pytest.mark.django_db


def test_data_error_is_a_400_and_an_outage_a_503():
    r = json_exception_handler(DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), {})
    assert r.status_code == 400 and "cannot store" in r.data["detail"]
    r = json_exception_handler(OperationalError("connection refused"), {})
    assert r.status_code == 503 and r["Retry-After"] == "5"


@pytest.mark.parametrize("body", [
    {"metrics": [{"metric": "\x00", "role": "primary"}]},
    {"layer": "a\x00b", "layer_share": 10},
    {"key": "nul\x00key"},
    {"name": "n\x00"},
])
def test_nul_characters_in_definitions_are_a_400(admin_api, body):
    from experiments.models import Metric

    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    data = {"key": "nul-test", "name": "n", "variants": [
        {"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}], **body}
    r = admin_api.post("/api/v1/experiments", data, format="json")
    assert r.status_code == 400, (r.status_code, r.content[:300])


@pytest.mark.parametrize("path", [
    "/api/v1/tasks/a%00b", "/api/v1/units/a%00b", "/api/v1/experiments/a%00b", "/api/v1/metrics/a%00b",
])
def test_nul_characters_in_paths_are_a_4xx(admin_api, path):
    r = admin_api.generic("DELETE" if "/units/" in path else "GET", path)
    assert 400 <= r.status_code < 500, (path, r.status_code, r.content[:200])
    assert r.json()


def test_sample_size_with_extreme_inputs_is_not_a_500(api_client_for):
    """Found by the fuzzer: a huge standard deviation overflowed inside the power calculation."""
    r = api_client_for("client").get("/api/v1/sample-size", {
        "n_variants": "999", "baseline": "6.116367926419136e+16", "relative": "true",
        "sd": "9.192275263448068e+306", "mde": "1.0", "power": "0.21965938095183996"})
    assert r.status_code in (200, 400), (r.status_code, r.content[:300])
