"""Environments: each API key sees only its environment's configuration; definitions are shared."""
from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from rest_framework.test import APIClient

from access.models import APIKey, Environment
from access.services import create_api_key
from assignment import runtime
from experiments import environments, flags, services
from experiments.models import Metric

pytestmark = pytest.mark.django_db


def client_for(environment: str | None, scope: str = "client") -> APIClient:
    _, raw = create_api_key(f"key-{environment}", scope, environment=environment)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


@pytest.fixture
def running(db):
    Metric.objects.create(key="purchase", name="Purchase", event="purchase")
    experiment = services.create_experiment({
        "key": "checkout-button", "name": "c", "planned_sample_size": 1000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "green", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    })
    return services.start_experiment(experiment)


def test_migration_creates_the_three_defaults():
    import importlib

    from django.apps import apps

    Environment.objects.all().delete()  # (a flushed test database may have lost them anyway)
    importlib.import_module("access.migrations.0003_environments").create_defaults(apps, None)
    assert sorted(Environment.objects.values_list("key", flat=True)) == ["development", "production", "staging"]


def test_keys_see_their_environment_config(running):
    flag = flags.create_flag({"key": "new-checkout", "name": "n"})
    flags.set_environment(flag, "staging", rules=[{"type": "force", "value": True}])
    environments.set_experiment_enabled(running, "staging", False, actor="tester")
    runtime.reset()
    staging = client_for("staging").get("/api/v1/config").json()
    production = client_for(None).get("/api/v1/config").json()
    full_staging = client_for("staging", "admin").get("/api/v1/config?full=true").json()
    assert full_staging["environment"] == "staging"
    [flag_doc] = full_staging["flags"]
    assert flag_doc["rules"][0]["type"] == "force"
    assert full_staging["experiments"][0]["enabled"] is False
    full_production = client_for("production", "admin").get("/api/v1/config?full=true").json()
    assert full_production["environment"] == "production"
    assert full_production["flags"][0]["rules"] == [] and full_production["experiments"][0]["enabled"] is True
    assert staging["version"] != production["version"]


def test_assignments_use_the_key_environment_state(running):
    environments.set_experiment_enabled(running, "development", False)
    runtime.reset()
    body = {"unit_id": "u-1", "experiments": ["checkout-button"]}
    for env, enabled in (("development", False), ("production", True)):
        r = client_for(env).post("/api/v1/assignments", data=json.dumps(body), content_type="application/json")
        assert r.status_code == 200
        version = r["X-Config-Version"]
        assert runtime.for_version(version).document["environment"] == env
        assert runtime.for_version(version).document["experiments"][0]["enabled"] is enabled


def test_key_without_environment_is_production_and_unknown_environment_is_refused(db):
    key, _ = create_api_key("plain", "client")
    assert key.environment_key == "production"
    with pytest.raises(ValueError):
        create_api_key("moon", "client", environment="moon")


def test_create_api_key_command_takes_an_environment(db, capsys):
    call_command("create_api_key", "ci-staging", "--scope", "analyst", "--environment", "staging")
    out = capsys.readouterr().out
    assert "environment staging" in out
    assert APIKey.objects.get(name="ci-staging").environment.key == "staging"


def test_environment_switch_is_validated_and_in_the_history(running):
    from experiments.audit import experiment_history

    environments.set_experiment_enabled(running, "staging", False, actor="dave")
    assert environments.experiment_states(running)["staging"] is False
    entry = next(e for e in experiment_history(running) if e["object_type"] == "environment")
    assert entry["object"] == "staging" and entry["who"] == "dave"
    with pytest.raises(ValidationError) as e:
        environments.set_experiment_enabled(running, "moon", False)
    assert "environment" in e.value.message_dict


def test_environments_api(admin_api, api_client_for, running):
    def send(method, path, body, client=admin_api):
        return getattr(client, method)(path, data=json.dumps(body), content_type="application/json")

    assert {e["key"] for e in api_client_for("analyst").get("/api/v1/environments").json()} >= {
        "development", "staging", "production"}
    r = send("post", "/api/v1/environments", {"key": "qa", "name": "QA"})
    assert r.status_code == 201
    assert send("post", "/api/v1/environments", {"key": "qa", "name": "again"}).status_code == 400
    assert send("post", "/api/v1/environments", {"key": "Bad Key", "name": "x"}).status_code == 400
    r = send("put", "/api/v1/experiments/checkout-button/environments/qa", {"enabled": False})
    assert r.status_code == 200 and r.json()["environments"]["qa"] is False
    r = send("put", "/api/v1/experiments/checkout-button/environments/moon", {"enabled": False})
    assert r.status_code == 400 and "environment" in r.json()
    r = send("put", "/api/v1/experiments/checkout-button/environments/qa", {"enabled": "maybe"})
    assert r.status_code == 400 and "enabled" in r.json()
    assert send("post", "/api/v1/environments", {"key": "x", "name": "x"}, api_client_for("analyst")).status_code == 403


def test_environment_in_use_by_a_key_is_protected(db):
    from django.db.models import ProtectedError

    create_api_key("k", "client", environment="staging")
    with pytest.raises(ProtectedError):
        Environment.objects.get(key="staging").delete()
