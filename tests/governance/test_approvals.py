"""Four eyes (REQUIRE_APPROVAL): request, approve by a second person, self-approval and stale requests refused."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework.test import APIClient

from experiments import approvals, services
from experiments.models import ApprovalRequest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _require_approval(settings):
    settings.REQUIRE_APPROVAL = True


def test_direct_transitions_are_refused_while_approval_is_required(draft, api_client_for):
    with pytest.raises(ValidationError, match="second person's approval"):
        services.start_experiment(draft)
    r = api_client_for("admin").post(f"/api/v1/experiments/{draft.key}/start")
    assert r.status_code == 400 and "approval" in r.json()["status"][0]
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_admin_start_files_a_request_and_a_second_pm_approves(login, draft):
    pat, sam = login("pat", "pm"), login("sam", "analyst")
    r = pat.post(f"/admin/experiments/experiment/{draft.pk}/transition/start/", {"comment": "ready"}, follow=True)
    assert "Approval requested" in r.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"
    approval = ApprovalRequest.objects.get()
    assert approval.requested_by.username == "pat" and approval.status == "pending" and approval.comment == "ready"

    # The requester sees the notice but cannot approve; the analyst sees approve/reject buttons.
    own = pat.get(f"/admin/experiments/experiment/{draft.pk}/change/").content.decode()
    assert "Approval pending" in own and f'id="approve-{approval.pk}"' not in own
    r = pat.post(f"/admin/experiments/experiment/approvals/{approval.pk}/approve/", follow=True)
    assert "cannot decide your own request" in r.content.decode()
    other = sam.get(f"/admin/experiments/experiment/{draft.pk}/change/").content.decode()
    assert f'id="approve-{approval.pk}"' in other
    assert "gov-exp" in sam.get("/admin/experiments/approvalrequest/").content.decode()

    sam.post(f"/admin/experiments/experiment/approvals/{approval.pk}/approve/", {"comment": "looks right"})
    draft.refresh_from_db()
    approval.refresh_from_db()
    assert draft.status == "running"
    assert approval.status == "approved" and approval.decided_by.username == "sam" and approval.decided_at
    assert "looks right" in approval.comment


def test_complete_and_ship_through_approval(person, draft, settings):
    settings.REQUIRE_APPROVAL = False
    services.start_experiment(draft)
    settings.REQUIRE_APPROVAL = True
    pat, sam = person("pat", "pm"), person("sam", "pm")
    approval = approvals.request_approval(draft, "complete", user=pat, shipped_variant="green")
    approvals.approve(approval.pk, user=sam)
    draft.refresh_from_db()
    assert draft.status == "completed" and draft.shipped_variant.key == "green"


def test_self_approval_is_refused(person, draft):
    pat = person("pat", "pm")
    approval = approvals.request_approval(draft, "start", user=pat)
    with pytest.raises(PermissionDenied, match="own request"):
        approvals.approve(approval.pk, user=pat)
    with pytest.raises(PermissionDenied, match="own request"):
        approvals.reject(approval.pk, user=pat)


def test_a_viewer_cannot_approve_or_request(person, draft):
    approval = approvals.request_approval(draft, "start", user=person("pat", "pm"))
    viewer = person("vic", "viewer")
    with pytest.raises(PermissionDenied, match="role"):
        approvals.approve(approval.pk, user=viewer)
    with pytest.raises(PermissionDenied):
        approvals.request_approval(draft, "complete", user=viewer)


def test_a_stale_request_is_refused_and_cancelled(person, draft):
    approval = approvals.request_approval(draft, "start", user=person("pat", "pm"))
    services.update_experiment(draft, {"traffic_allocation": 100}, actor="pat")  # changed after the request
    with pytest.raises(ValidationError, match="changed since"):
        approvals.approve(approval.pk, user=person("sam", "analyst"))
    approval.refresh_from_db()
    draft.refresh_from_db()
    assert approval.status == "cancelled" and draft.status == "draft"


def test_a_child_edit_also_makes_the_request_stale(person, draft):
    approval = approvals.request_approval(draft, "start", user=person("pat", "pm"))
    draft.variants.filter(key="green").update(payload={"color": "red"})
    with pytest.raises(ValidationError, match="changed since"):
        approvals.approve(approval.pk, user=person("sam", "analyst"))


@pytest.mark.parametrize("edit", ["audience", "audience_conditions", "environment"])
def test_audiences_and_environment_switches_also_make_the_request_stale(person, draft, edit):
    from experiments import audiences, environments
    from experiments.models import Audience

    us = audiences.save_audience(Audience(), {"key": "us", "name": "US", "match": "all", "conditions": [
        {"attribute": "country", "operator": "equals", "values": ["US"]}]})
    if edit == "audience_conditions":
        audiences.set_experiment_audiences(draft, ["us"])
    before = approvals.fingerprint(type(draft).objects.get(pk=draft.pk))
    approval = approvals.request_approval(draft, "start", user=person("pat", "pm"))
    if edit == "audience":
        audiences.set_experiment_audiences(draft, ["us"])
    elif edit == "audience_conditions":  # a draft's audience may change: the approver must see it
        audiences.save_audience(us, {"conditions": [{"attribute": "country", "operator": "equals", "values": ["DE"]}]})
    else:
        environments.set_experiment_enabled(draft, "production", False)
    assert approvals.fingerprint(type(draft).objects.get(pk=draft.pk)) != before
    with pytest.raises(ValidationError, match="changed since"):
        approvals.approve(approval.pk, user=person("sam", "analyst"))


def test_one_pending_request_per_action(person, draft):
    pat = person("pat", "pm")
    approvals.request_approval(draft, "start", user=pat)
    with pytest.raises(ValidationError, match="already pending"):
        approvals.request_approval(draft, "start", user=person("sam", "pm"))


def test_reject_and_cancel(person, draft):
    pat, sam = person("pat", "pm"), person("sam", "analyst")
    first = approvals.request_approval(draft, "start", user=pat)
    approvals.reject(first.pk, user=sam, comment="no primary guardrail")
    first.refresh_from_db()
    assert first.status == "rejected" and first.decided_by == sam
    with pytest.raises(ValidationError, match="already rejected"):
        approvals.approve(first.pk, user=sam)
    second = approvals.request_approval(draft, "start", user=pat)
    with pytest.raises(PermissionDenied):
        approvals.cancel(second.pk, user=sam)
    approvals.cancel(second.pk, user=pat)
    second.refresh_from_db()
    assert second.status == "cancelled"
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_a_failing_transition_leaves_the_request_pending(person, draft):
    approval = approvals.request_approval(draft, "start", user=person("pat", "pm"))
    draft.experiment_metrics.all().delete()  # no primary metric any more (and the fingerprint moves)
    approval.fingerprint = approvals.fingerprint(type(draft).objects.get(pk=draft.pk))
    approval.save()
    with pytest.raises(ValidationError, match="primary metric"):
        approvals.approve(approval.pk, user=person("sam", "analyst"))
    approval.refresh_from_db()
    assert approval.status == "pending"


def test_requests_and_decisions_appear_in_the_history(person, draft):
    approval = approvals.request_approval(draft, "start", user=person("pat", "pm"), comment="go")
    approvals.approve(approval.pk, user=person("sam", "analyst"))
    entries = approvals.history_entries(draft)
    assert [(e["who"], e["change"]) for e in entries] == [
        ("pat", f"Start: approval requested (#{approval.pk})"),
        ("sam", f"Start: approved (#{approval.pk})"),
    ]
    assert approval.history.count() == 2  # simple-history keeps both rows too


def _key_client(api_key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key('admin')}")
    return client


def test_api_request_and_approve_with_two_admin_keys(draft, api_key, api_client_for):
    first, second = _key_client(api_key), _key_client(api_key)
    r = first.post(f"/api/v1/experiments/{draft.key}/approvals", {"action": "start", "comment": "ok?"}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["status"] == "pending" and body["requested_by"].startswith("api-key:")
    same = first.post(f"/api/v1/approvals/{body['id']}/approve", {}, format="json")
    assert same.status_code == 403 and "own request" in same.json()["detail"]
    assert api_client_for("analyst").post(f"/api/v1/approvals/{body['id']}/approve").status_code == 403
    r = second.post(f"/api/v1/approvals/{body['id']}/approve", {"comment": "yes"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "approved"
    draft.refresh_from_db()
    assert draft.status == "running"
    listed = api_client_for("analyst").get(f"/api/v1/experiments/{draft.key}/approvals").json()
    assert [a["status"] for a in listed] == ["approved"]


def test_api_reject_and_bad_input(draft, api_key):
    first, second = _key_client(api_key), _key_client(api_key)
    bad = first.post(f"/api/v1/experiments/{draft.key}/approvals", {"action": "explode"}, format="json")
    assert bad.status_code == 400 and "action" in bad.json()
    ship = first.post(f"/api/v1/experiments/{draft.key}/approvals", {"action": "complete"}, format="json")
    assert ship.status_code == 400 and "status" in ship.json()  # a draft cannot be completed
    r = first.post(f"/api/v1/experiments/{draft.key}/approvals", {"action": "start"}, format="json")
    again = second.post(f"/api/v1/experiments/{draft.key}/approvals", {"action": "start"}, format="json")
    assert again.status_code == 400 and "already pending" in again.json()["action"][0]
    rejected = second.post(f"/api/v1/approvals/{r.json()['id']}/reject", format="json")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert second.post("/api/v1/approvals/999999/approve").status_code == 404


def test_confirmation_page_says_an_approval_will_be_requested(login, draft):
    page = login("pat", "pm").get(f"/admin/experiments/experiment/{draft.pk}/lifecycle/start/").content.decode()
    assert "requires a second person&#x27;s approval" in page
    assert 'id="approval-comment"' in page and "Request approval to start" in page


def test_bulk_start_is_refused_with_a_message(login, draft):
    r = login("pat", "pm").post("/admin/experiments/experiment/",
                                {"action": "start_selected", "_selected_action": [draft.pk]}, follow=True)
    assert "second person" in r.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"


# --- a new phase (a plan change mid-flight) needs the same four eyes -------------------------------

@pytest.fixture
def started(draft, person):
    approval = approvals.request_approval(draft, "start", user=person("ann", "pm"))
    approvals.approve(approval.pk, user=person("bob", "analyst"))
    draft.refresh_from_db()
    return draft


SPLIT = {"variants": [{"key": "control", "weight": 70, "is_control": True},
                      {"key": "green", "weight": 30, "payload": {"color": "green"}}]}


def test_a_new_phase_is_refused_without_approval_and_starts_once_approved(person, started):
    from experiments import phases

    with pytest.raises(ValidationError, match="second person's approval to start a new phase"):
        phases.start_new_phase(started, SPLIT, rerandomize=True, reason="ship-safe split")
    # Requests are checked when filed: no reason, or nothing to change, is refused at once.
    with pytest.raises(ValidationError, match="Say why"):
        approvals.request_approval(started, "new_phase", user=person("pat", "pm"),
                                   phase_request={"changes": SPLIT, "rerandomize": True, "reason": " "})
    with pytest.raises(ValidationError, match="Nothing in the plan"):
        approvals.request_approval(started, "new_phase", user=person("pam", "pm"),
                                   phase_request={"changes": {}, "rerandomize": False, "reason": "r"})
    with pytest.raises(ValidationError, match="with its changes"):
        approvals.request_approval(started, "new_phase", user=person("pia", "pm"))
    pat = person("pat2", "pm")
    approval = approvals.request_approval(started, "new_phase", user=pat,
                                          phase_request={"changes": SPLIT, "rerandomize": True, "reason": "ship-safe"})
    assert started.phases.count() == 1
    with pytest.raises(PermissionDenied):
        approvals.approve(approval.pk, user=pat)
    approvals.approve(approval.pk, user=person("sam", "analyst"))
    started.refresh_from_db()
    assert started.current_phase == 2 and started.salt == "gov-exp.phase2"
    assert sorted((v.key, int(v.weight)) for v in started.variants.all()) == [("control", 70), ("green", 30)]
    phase = started.phases.get(number=2)
    assert phase.reason == "ship-safe" and phase.rerandomized and phase.created_by == "sam"


def test_a_phase_request_goes_stale_when_the_plan_moved(person, started):
    first = approvals.request_approval(started, "new_phase", user=person("pat", "pm"),
                                       phase_request={"changes": SPLIT, "rerandomize": False, "reason": "a"})
    other = approvals.request_approval  # a second pending new-phase request is refused
    with pytest.raises(ValidationError, match="already pending"):
        other(started, "new_phase", user=person("pam", "pm"),
              phase_request={"changes": {}, "rerandomize": True, "reason": "b"})
    # Meanwhile the definition moved: the request no longer describes what would start.
    started.variants.filter(key="green").update(payload={"color": "teal"})
    with pytest.raises(ValidationError, match="changed since"):
        approvals.approve(first.pk, user=person("sam", "analyst"))
    assert started.phases.count() == 1


def test_phase_api_and_admin_file_requests_while_approval_is_required(person, started, api_client_for, login):
    r = api_client_for("admin").post(f"/api/v1/experiments/{started.key}/phases",
                                     {"changes": SPLIT, "rerandomize": False, "reason": "api split"}, format="json")
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["action"] == "new_phase" and body["status"] == "pending"
    assert started.phases.count() == 1
    approval = ApprovalRequest.objects.get(pk=body["id"])
    assert float(approval.phase_request["changes"]["variants"][0]["weight"]) == 70
    approvals.reject(approval.pk, user=person("sam", "analyst"))
    pm = login("pat", "pm")
    url = f"/admin/experiments/experiment/{started.pk}/phases/new/"
    form = pm.get(url).context["form"]
    import json

    data = {k: ("on" if v is True else "" if v in (None, False) else json.dumps(v) if isinstance(v, list) else str(v))
            for k, v in {**form.initial, **{n: f.initial for n, f in form.fields.items()
                                             if f.initial is not None}}.items()}
    data = {k: v for k, v in data.items() if v != ""}
    r = pm.post(url, {**data, "weight_control": "60", "weight_green": "40", "reason": "admin split"}, follow=True)
    assert "Approval requested" in r.content.decode()
    approval = ApprovalRequest.objects.get(action="new_phase", status="pending")
    approvals.approve(approval.pk, user=person("sue", "analyst"))
    started.refresh_from_db()
    assert started.current_phase == 2
    assert sorted((v.key, int(v.weight)) for v in started.variants.all()) == [("control", 60), ("green", 40)]
