"""Flags end to end: defined through the services, served per environment, evaluated by the
endpoint, by the server evaluator and by the Python SDK from the client document - all agree."""
from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from access.services import create_api_key
from assignment import runtime
from assignment.evaluator import Evaluator
from assignment.hashing import bucket
from experiments import audiences, flags, services
from experiments.models import Audience, Metric

pytestmark = pytest.mark.django_db

UNITS = [f"u-{i}" for i in range(300)]


def client_for(environment: str | None, scope: str = "client") -> APIClient:
    _, raw = create_api_key(f"key-{environment}-{scope}", scope, environment=environment)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def evaluate(client: APIClient, unit_id: str, attributes: dict) -> dict:
    body = {"unit_id": unit_id, "attributes": attributes}
    response = client.post("/api/v1/flags/evaluate", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def defined(db):
    Metric.objects.create(key="purchase", name="Purchase", event="purchase")
    experiment = services.start_experiment(services.create_experiment({
        "key": "checkout-copy", "name": "copy", "planned_sample_size": 1000,
        "variants": [{"key": "control", "weight": 50, "is_control": True, "payload": {"new-checkout": False}},
                     {"key": "bold", "weight": 50, "payload": {"new-checkout": True}}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    }))
    audiences.save_audience(Audience(), {"key": "vip", "name": "VIP", "match": "any",
                                         "conditions": [{"attribute": "plan", "operator": "equals", "values": ["vip"]}]})
    flag = flags.create_flag({"key": "new-checkout", "name": "New checkout", "value_type": "boolean",
                              "default_value": False})
    flags.set_environment(flag, "production", rules=[
        {"type": "force", "audiences": ["vip"], "value": True},
        {"type": "rollout", "value": True, "percent": 10},
        {"type": "experiment", "experiment": "checkout-copy"},
    ])
    flags.set_environment(flag, "staging", rules=[{"type": "force", "value": True}])
    runtime.reset()
    return flag, experiment


def test_endpoint_server_evaluator_and_sdk_agree_per_environment(defined):
    from abplatform_sdk.evaluator import Evaluator as SdkEvaluator

    production = client_for("production")
    full = client_for("production", "admin").get("/api/v1/config?full=true").json()
    server = Evaluator(full)
    sdk = SdkEvaluator(production.get("/api/v1/config").json())
    reasons = set()
    for i, unit in enumerate(UNITS):
        attributes = {"plan": "vip" if i % 10 == 0 else "free"}
        answer = evaluate(production, unit, attributes)
        assert answer["environment"] == "production"
        got = answer["flags"]["new-checkout"]
        local = server.evaluate_flag("new-checkout", unit, attributes)
        remote = sdk.flags.evaluate("new-checkout", unit, attributes)
        assert (got["value"], got["reason"], got["rule_id"]) == (local.value, local.reason, local.rule_id)
        assert (remote.value, remote.reason, remote.rule_id) == (local.value, local.reason, local.rule_id)
        if attributes["plan"] == "vip":
            assert got["reason"] == "force" and got["value"] is True
        elif bucket("flag", "new-checkout", unit) < 1000:
            assert got["reason"] == "rollout" and got["value"] is True
        else:  # the experiment rule: everyone is enrolled (100 % traffic)
            assert got["reason"] == "experiment" and got["value"] is (got["variant"] == "bold")
        reasons.add(got["reason"])
    assert reasons == {"force", "rollout", "experiment"}
    staging = evaluate(client_for("staging"), "u-1", {})
    assert staging["environment"] == "staging"
    assert staging["flags"]["new-checkout"]["reason"] == "force"
    assert staging["flags"]["new-checkout"]["value"] is True


def test_ramping_through_the_service_keeps_every_unit_already_on(defined):
    flag, _ = defined
    client = client_for("production")

    def rolled_out() -> set[str]:
        runtime.reset()
        return {u for u in UNITS if evaluate(client, u, {"plan": "free"})["flags"]["new-checkout"]["reason"] == "rollout"}

    at_10 = rolled_out()
    rules = flags.flag_as_dict(flags.flags_queryset().get(pk=flag.pk))["environments"]["production"]["rules"]
    rollout = next(r for r in rules if r["type"] == "rollout")
    ramped = [dict(r, percent=50) if r is rollout else r for r in rules]
    flags.set_environment(flag, "production", rules=ramped)
    at_50 = rolled_out()
    assert at_10 < at_50
    assert 0.05 < len(at_10) / len(UNITS) < 0.16 and 0.4 < len(at_50) / len(UNITS) < 0.6


def test_experiment_rule_deciding_records_one_exposure(defined):
    from assignment import services as assignment_services
    from assignment.models import Exposure

    client = client_for("production")
    decided = [u for u in UNITS[:60]
               if evaluate(client, u, {"plan": "free"})["flags"]["new-checkout"]["reason"] == "experiment"]
    evaluate(client, UNITS[0], {"plan": "vip"})  # forced: no exposure whatever the experiment says
    assignment_services.flush_exposures()  # the local buffer, and the Redis queue in production mode
    exposed = list(Exposure.objects.filter(experiment__key="checkout-copy").values_list("unit_id", flat=True))
    assert sorted(exposed) == sorted(decided) and decided
