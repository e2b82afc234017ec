"""The documented request serializer and the hot path's validator accept and reject alike, and
the OpenAPI schema documents the three endpoints."""
from __future__ import annotations

import pytest
from rest_framework import serializers

from assignment.serializers import AssignmentRequestSerializer, parse_assignment_request

BODIES = [
    {"unit_id": "u"},
    {"unit_id": "  u  ", "attributes": {"a": 1, "b": "x", "c": True, "d": None, "e": 1.5}},
    {"unit_id": "u", "experiments": ["a", "b"]},
    {"unit_id": "u", "experiments": []},
    {},
    {"unit_id": ""},
    {"unit_id": None},
    {"unit_id": 5},
    {"unit_id": True},
    {"unit_id": "x" * 256},
    {"unit_id": "x" * 257},
    {"unit_id": "a\x00"},
    {"unit_id": "u", "attributes": None},
    {"unit_id": "u", "attributes": []},
    {"unit_id": "u", "attributes": {"a": {}}},
    {"unit_id": "u", "attributes": {"": 1}},
    {"unit_id": "u", "attributes": {"a": "\x00"}},
    {"unit_id": "u", "experiments": None},
    {"unit_id": "u", "experiments": "a"},
    {"unit_id": "u", "experiments": [""]},
    {"unit_id": "u", "experiments": [1]},
    {"unit_id": "u", "experiments": ["x" * 65]},
    {"unit_id": "u", "experiments": ["a"] * 201},
    {"unit_id": 1, "attributes": [], "experiments": 3},
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: repr(b)[:40])
def test_fast_validator_agrees_with_the_documented_serializer(body):
    serializer = AssignmentRequestSerializer(data=body)
    documented_ok = serializer.is_valid()
    try:
        unit_id, attributes, experiments = parse_assignment_request(body)
    except serializers.ValidationError as exc:
        assert not documented_ok, exc.detail
        assert set(exc.detail) == set(serializer.errors)
        return
    assert documented_ok, serializer.errors
    assert unit_id == serializer.validated_data["unit_id"]
    assert attributes == serializer.validated_data["attributes"]
    assert experiments == serializer.validated_data.get("experiments")


def test_openapi_schema_documents_the_endpoints(admin_api):
    response = admin_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json() if response["Content-Type"].endswith("json") else None
    if schema is None:
        import yaml

        schema = yaml.safe_load(response.content)
    paths = schema["paths"]
    post = paths["/api/v1/assignments"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/AssignRequest")
    assert {"200", "400", "401", "403", "413"} <= set(post["responses"])
    single = paths["/api/v1/experiments/{key}/assignment"]["get"]
    assert {"200", "400", "404"} <= set(single["responses"])
    assert any(p["name"] == "unit_id" and p["required"] for p in single["parameters"])
    config = paths["/api/v1/config"]["get"]
    assert {"200", "304"} <= set(config["responses"])
    components = schema["components"]["schemas"]
    assert set(components["Assignment"]["required"]) >= {"experiment", "variant", "in_experiment", "reason", "payload"}
    assert "exposures-local-buffer" not in str(components["Assignment"])
