"""Issue 12: one audit trail per experiment, children included, in the API and the admin."""
from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from experiments import audit, services
from experiments.models import Experiment, Layer, Override

from .conftest import experiment_data

pytestmark = pytest.mark.django_db


def find(entries, object_type, field=None, **match):
    hits = [e for e in entries if e["object_type"] == object_type and all(e[k] == v for k, v in match.items())]
    if field is None:
        return hits
    return [c for e in hits for c in e["changes"] if c["field"] == field]


@pytest.fixture
def story(metrics, layer):
    """Create, edit every kind of child, start, complete and ship."""
    alice = User.objects.create_superuser("alice", "a@example.com", "pw")
    exp = services.create_experiment(experiment_data(layer=layer, layer_share=30), actor="api-key:ci")
    services.update_experiment(exp, {
        "variants": [{"key": "control", "weight": 40, "is_control": True},
                     {"key": "green", "weight": 60, "payload": {"color": "lime"}}],
        "targeting": [{"attribute": "country", "operator": "in", "values": ["CN", "US", "DE"]}],
        "metrics": [{"metric": "purchase", "role": "primary"}, {"metric": "revenue", "role": "guardrail"}],
        "layer_share": 40,
    }, actor="alice")
    Override.objects.create(experiment=exp, unit_id="qa-secret@example.com", variant=exp.variants.get(key="green"))
    services.save_layer(Layer.objects.get(pk=layer.pk), {"holdout_percent": 5}, actor="alice")
    services.start_experiment(exp, actor="alice")
    services.complete_experiment(exp, shipped_variant="green", actor="alice")
    return exp, alice


def test_the_trail_has_every_child_edit_old_to_new(story):
    exp, _ = story
    entries = audit.experiment_history(exp)
    assert find(entries, "variant", "weight", object="green") == [  # newest first
        {"field": "weight", "old": "50", "new": "60"}, {"field": "weight", "old": "none", "new": "50"}]
    assert {"field": "payload", "old": '{"color": "green"}', "new": '{"color": "lime"}'} in find(entries, "variant", "payload")
    assert {"field": "values", "old": '["CN", "US"]', "new": '["CN", "US", "DE"]'} in find(entries, "targeting rule", "values")
    assert find(entries, "metric", "role", object="revenue") == [{"field": "role", "old": "none", "new": "guardrail"}]
    assert find(entries, "override", "unit_id") == [{"field": "unit_id", "old": "none", "new": "qa-secret@example.com"}]
    assert find(entries, "override", "variant") == [{"field": "variant", "old": "none", "new": "green"}]
    assert {"field": "layer_share", "old": "30", "new": "40"} in find(entries, "experiment", "layer_share")
    assert {"field": "holdout_percent", "old": "10", "new": "5"} in find(entries, "layer", "holdout_percent")
    assert {"field": "status", "old": "running", "new": "completed"} in find(entries, "experiment", "status")
    assert {"field": "shipped_variant", "old": "none", "new": "green"} in find(entries, "experiment", "shipped_variant")
    started = [e for e in entries if any(c["field"] == "status" and c["new"] == "running" for c in e["changes"])]
    assert started[0]["reason"] == "started by alice"
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)


def test_no_raw_representations(story):
    exp, _ = story
    text = json.dumps(audit.experiment_history(exp), default=str)
    assert "pk=None" not in text and "Deleted" not in text and "object at 0x" not in text
    assert '"old": "None"' not in text and "Decimal(" not in text


def test_deleted_draft_variant_shows_as_deleted_with_its_key(make_experiment):
    exp = make_experiment()
    services.update_experiment(exp, {"variants": [
        {"key": "control", "weight": 50, "is_control": True}, {"key": "blue", "weight": 50}]}, actor="bob")
    entries = audit.experiment_history(exp)
    assert [e["action"] for e in find(entries, "variant", object="green")] == ["deleted", "created"]
    assert find(entries, "variant", "key", object="blue", action="created")


def test_api_history_endpoint_and_scopes(story, api_client_for):
    exp, _ = story
    r = api_client_for("analyst").get(f"/api/v1/experiments/{exp.key}/history")
    assert r.status_code == 200
    body = r.json()
    assert body[0]["object_type"] == "experiment" and body[0]["who"] == "alice"
    assert body[-1]["who"] == "api-key:ci" and body[-1]["action"] == "created"
    assert {"at", "who", "object_type", "object", "action", "reason", "changes"} == set(body[0])
    assert api_client_for("client").get(f"/api/v1/experiments/{exp.key}/history").status_code == 403
    assert api_client_for(None).get(f"/api/v1/experiments/{exp.key}/history").status_code in (401, 403)
    assert api_client_for("analyst").get("/api/v1/experiments/nope/history").status_code == 404


def test_history_is_in_the_openapi_schema_as_a_named_component(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "ExperimentHistoryEntry" in schema["components"]["schemas"]
    op = schema["paths"]["/api/v1/experiments/{key}/history"]["get"]
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"]
    assert ref.endswith("/ExperimentHistoryEntry")


def test_admin_history_page_shows_the_combined_trail(story, client):
    exp, alice = story
    client.force_login(alice)
    page = client.get(f"/admin/experiments/experiment/{exp.pk}/history/").content.decode()
    assert 'id="audit-trail"' in page
    for text in ("targeting rule", "guardrail", "qa-secret@example.com", "holdout_percent", "started by alice"):
        assert text in page, text
    assert "pk=None" not in page and "Deleted variant" not in page


def test_unit_erasure_removes_override_unit_ids_from_the_trail(story, client):
    from analysis.privacy import erase_unit

    exp, alice = story
    erase_unit("qa-secret@example.com")
    assert "qa-secret" not in json.dumps(audit.experiment_history(exp), default=str)
    client.force_login(alice)
    assert "qa-secret" not in client.get(f"/admin/experiments/experiment/{exp.pk}/history/").content.decode()


def test_other_sources_can_add_entries(make_experiment):
    exp = make_experiment()

    def approvals(experiment: Experiment):
        yield {"at": experiment.created_at, "who": "carol", "object_type": "approval", "object": "start",
               "action": "approved", "reason": "looks good", "changes": []}

    audit.register_source(approvals)
    try:
        assert find(audit.experiment_history(exp), "approval", who="carol")
    finally:
        audit.SOURCES.remove(approvals)


def test_approvals_are_in_the_trail(make_experiment):
    from experiments import approvals

    alice = User.objects.create_superuser("alice", "a@example.com", "pw")
    bob = User.objects.create_superuser("bob", "b@example.com", "pw")
    exp = make_experiment()
    request = approvals.request_approval(exp, "start", user=alice, comment="ready")
    approvals.approve(request.pk, user=bob, comment="ok")
    entries = audit.experiment_history(exp)
    assert {"field": "status", "old": "pending", "new": "approved"} in find(entries, "approval", "status", object="start")
    assert {"field": "decided_by", "old": "none", "new": "bob"} in find(entries, "approval", "decided_by")
    assert find(entries, "approval", "requested_by", object="start")[0]["new"] == "alice"
    assert {"field": "status", "old": "draft", "new": "running"} in find(entries, "experiment", "status")
