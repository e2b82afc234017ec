"""Saved audiences: validation like targeting, frozen by started experiments, logged for flags."""
from __future__ import annotations

import json
import logging

import pytest
from django.core.exceptions import ValidationError

from assignment.document import build_document
from experiments import audiences, flag_audit, flags, services
from experiments.audit import experiment_history
from experiments.models import Audience

pytestmark = pytest.mark.django_db

EU = [{"attribute": "country", "operator": "in", "values": ["DE", "FR"]},
      {"attribute": "platform", "operator": "equals", "values": ["ios"]}]


def make_audience(key="eu-mobile", conditions=EU, match="all"):
    return audiences.save_audience(Audience(), {"key": key, "name": key, "match": match, "conditions": conditions},
                                   actor="tester")


@pytest.mark.parametrize(("conditions", "words"), [
    ([{"attribute": "age", "operator": "gte", "values": ["old"]}], "compares numbers"),
    ([{"attribute": "country", "operator": "like", "values": ["x"]}], "unknown operator"),
    ([{"attribute": "v", "operator": "semver_gt", "values": ["1.2"]}], "semantic version"),
    ([{"attribute": "country", "operator": "in", "values": []}], "at least one value"),
    ([{"attribute": "1bad", "operator": "exists"}], "attribute names"),
    ([{"attribute": "x", "operator": "exists", "colour": 1}], "unknown member"),
    ({"attribute": "x"}, "list of conditions"),
    ([{"attribute": "x", "operator": "exists"}] * 51, "At most 50"),
])
def test_conditions_are_validated_like_targeting(conditions, words):
    with pytest.raises(ValidationError) as e:
        make_audience(conditions=conditions)
    assert any(words in m for m in e.value.message_dict["conditions"]), e.value.message_dict


def test_match_key_uniqueness_and_fixed_key():
    audience = make_audience()
    with pytest.raises(ValidationError) as e:
        make_audience()
    assert "key" in e.value.message_dict
    with pytest.raises(ValidationError) as e:
        audiences.save_audience(audience, {"match": "some"})
    assert "match" in e.value.message_dict
    with pytest.raises(ValidationError) as e:
        audiences.save_audience(audience, {"key": "renamed"})
    assert "key" in e.value.message_dict


def test_edit_refused_while_a_started_experiment_uses_it(make_experiment):
    audience = make_audience()
    experiment = make_experiment()
    audiences.set_experiment_audiences(experiment, ["eu-mobile"])
    audiences.save_audience(audience, {"conditions": EU[:1]})  # draft: fine
    services.start_experiment(experiment)
    with pytest.raises(ValidationError) as e:
        audiences.save_audience(audience, {"conditions": EU})
    assert "checkout-button (running)" in e.value.message_dict["conditions"][0]
    with pytest.raises(ValidationError):
        audiences.save_audience(audience, {"match": "any"})
    audiences.save_audience(audience, {"name": "EU mobile", "conditions": EU[:1]})  # no real change: fine
    services.pause_experiment(experiment)
    with pytest.raises(ValidationError):
        audiences.save_audience(audience, {"conditions": EU})
    services.complete_experiment(experiment)
    audiences.save_audience(audience, {"conditions": EU})  # no longer enrolling


def test_experiment_audiences_are_part_of_the_frozen_plan(make_experiment):
    make_audience()
    make_audience(key="beta", conditions=[{"attribute": "beta", "operator": "exists"}])
    experiment = make_experiment()
    assert audiences.set_experiment_audiences(experiment, ["beta", "eu-mobile"]) == ["beta", "eu-mobile"]
    with pytest.raises(ValidationError) as e:
        audiences.set_experiment_audiences(experiment, ["nope"])
    assert "audiences" in e.value.message_dict
    services.start_experiment(experiment)
    assert audiences.set_experiment_audiences(experiment, ["beta", "eu-mobile"]) == ["beta", "eu-mobile"]  # no-op
    with pytest.raises(ValidationError) as e:
        audiences.set_experiment_audiences(experiment, ["beta"])
    assert "frozen" in e.value.message_dict["audiences"][0]
    trail = experiment_history(experiment)
    assert any(e["object_type"] == "audience" and e["object"] == "eu-mobile" for e in trail)


def test_edit_used_by_a_flag_is_allowed_and_logged(caplog):
    audience = make_audience()
    flag = flags.create_flag({"key": "new-checkout", "name": "n"})
    flags.set_environment(flag, "production", rules=[{"type": "force", "audiences": ["eu-mobile"], "value": True}])
    with caplog.at_level(logging.INFO, logger="experiments.audiences"):
        audiences.save_audience(audience, {"match": "any"}, actor="carol")
    assert "affects flags new-checkout" in caplog.text
    entry = next(e for e in flag_audit.flag_history(flag) if e["object_type"] == "audience")
    assert entry["reason"] == "changed; affects flags new-checkout by carol"
    assert {"field": "match", "old": "all", "new": "any"} in entry["changes"]
    assert any(e["action"] == "changed" for e in flag_audit.audience_history(audience))


def test_usage_and_delete(make_experiment):
    audience = make_audience()
    experiment = make_experiment()
    audiences.set_experiment_audiences(experiment, ["eu-mobile"])
    flag = flags.create_flag({"key": "f", "name": "f"})
    flags.set_environment(flag, "staging", rules=[{"type": "rollout", "audiences": ["eu-mobile"], "value": True,
                                                   "percent": 5}])
    assert audiences.usage(audience) == {
        "experiments": [{"key": "checkout-button", "status": "draft"}],
        "flags": [{"key": "f", "environments": ["staging"]}],
    }
    with pytest.raises(ValidationError) as e:
        audiences.delete_audience(audience)
    assert "experiment checkout-button" in e.value.message_dict["audience"][0]
    audiences.set_experiment_audiences(experiment, [])
    flags.set_environment(flag, "staging", rules=[])
    audiences.delete_audience(audience)
    assert not Audience.objects.exists()


def test_document_carries_audiences_and_experiment_audiences(make_experiment):
    make_audience()
    make_audience(key="empty", conditions=[], match="any")
    experiment = make_experiment()
    audiences.set_experiment_audiences(experiment, ["eu-mobile"])
    document, _ = build_document()
    assert document["audiences"] == {"empty": {"match": "any", "conditions": []},
                                     "eu-mobile": {"match": "all", "conditions": EU}}
    [entry] = document["experiments"]
    assert entry["audiences"] == ["eu-mobile"] and entry["enabled"] is True


def test_api(admin_api, api_client_for, make_experiment):
    def send(method, path, body):
        return getattr(admin_api, method)(path, data=json.dumps(body), content_type="application/json")

    r = send("post", "/api/v1/audiences", {"key": "eu-mobile", "name": "EU mobile", "conditions": EU})
    assert r.status_code == 201, r.content
    assert r.json()["used_by"] == {"experiments": [], "flags": []}
    r = admin_api.post("/api/v1/audiences", data='{"key": "bad", "name": "b", "conditions": [{"attribute": "age", '
                       '"operator": "gt", "values": [1e400]}]}', content_type="application/json")
    assert r.status_code == 400 and any(k.startswith("conditions") for k in r.json()), r.json()
    r = send("post", "/api/v1/audiences", {"key": "bad", "name": "b", "conditions": [
        {"attribute": "age", "operator": "gt", "values": ["old"]}]})
    assert r.status_code == 400 and "compares numbers" in r.json()["conditions"][0]
    r = send("post", "/api/v1/audiences", {"key": "eu-mobile", "name": "again"})
    assert r.status_code == 400 and "key" in r.json()
    make_experiment()
    r = send("put", "/api/v1/experiments/checkout-button/audiences", {"audiences": ["eu-mobile"]})
    assert r.json() == {"audiences": ["eu-mobile"]}
    admin_api.post("/api/v1/experiments/checkout-button/start")
    r = send("patch", "/api/v1/audiences/eu-mobile", {"match": "any"})
    assert r.status_code == 400 and "frozen" in r.json()["match"][0]
    assert send("patch", "/api/v1/audiences/eu-mobile", {"description": "ok"}).status_code == 200
    assert admin_api.delete("/api/v1/audiences/eu-mobile").status_code == 400
    assert api_client_for("analyst").get("/api/v1/audiences/eu-mobile").json()["used_by"]["experiments"] == [
        {"key": "checkout-button", "status": "running"}]
    assert api_client_for("analyst").get("/api/v1/audiences/eu-mobile/history").status_code == 200


def test_audience_and_environment_changes_move_the_config_version(monkeypatch):
    from access.models import Environment
    from assignment import runtime

    runtime.reset()
    before = runtime.current().version
    audience = make_audience()
    after_create = runtime.current().version
    assert after_create != before
    audiences.save_audience(audience, {"match": "any"})
    assert runtime.current().version != after_create
    runtime.current("staging")
    builds = []
    original = runtime.build_document
    monkeypatch.setattr(runtime, "build_document", lambda env: builds.append(env) or original(env))
    runtime.current("staging")
    assert builds == []  # warm: no rebuild
    Environment.objects.get(key="staging").save()
    runtime.current("staging")
    assert builds == ["staging"]  # an environment change invalidates the documents
