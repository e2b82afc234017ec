"""Four eyes on starting and completing experiments (``REQUIRE_APPROVAL``).

One person (or API key) requests; a *different* person with the approve permission (the PM or
analyst role), or a different admin API key, approves, which runs the transition in the same
transaction. A request records a fingerprint of the definition; if the experiment changed since,
approving is refused and the request is cancelled as stale (ask again, so the approver sees what
will really start).

Locks (PostgreSQL): every write here locks the experiment row first (``select_for_update``), then
the request row, always in that order. Two approvers of one request serialise on those locks; the
second sees it decided. The partial unique constraint ``one_pending_approval_per_action`` backs
"one pending request per action" even for two concurrent requests.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import services
from .governance import APPROVE_PERMISSION, may_act
from .models import ApprovalRequest, Experiment

Action = ApprovalRequest.Action
State = ApprovalRequest.Status


def fingerprint(experiment: Experiment) -> str:
    """A digest of everything an approver approves: settings, variants, metrics, targeting,
    audiences, environment switches, status."""
    fields = {f: str(getattr(experiment, f)) for f in (*services.EXPERIMENT_FIELDS, "status")}
    fields["variants"] = [
        [v.key, str(v.weight), v.is_control, v.payload] for v in experiment.variants.order_by("key")
    ]
    fields["metrics"] = sorted(experiment.experiment_metrics.values_list("metric__key", "role"))
    fields["targeting"] = [
        [r.attribute, r.operator, r.values] for r in experiment.targeting_rules.order_by("position", "id")
    ]
    # Saved audiences (with their conditions: they decide who enters) and per-environment
    # switches; only when set, so fingerprints of requests filed before they existed still hold.
    audiences = [
        [link.audience.key, link.audience.match, link.audience.conditions]
        for link in experiment.audience_links.select_related("audience").order_by("position", "id")
    ]
    if audiences:
        fields["audiences"] = audiences
    switches = sorted(experiment.environment_states.values_list("environment__key", "enabled"))
    if switches:
        fields["environments"] = switches
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _who(user, key: str) -> str:
    return user.get_username() if user is not None else key


def request_approval(
    experiment: Experiment, action: str, *, user=None, key: str = "", shipped_variant: str = "", comment: str = "",
    phase_request: dict[str, Any] | None = None,
) -> ApprovalRequest:
    """Ask for a start, a completion or a new phase. ``user`` is a person; ``key`` names an API key
    (admin scope). A new phase carries ``phase_request``: ``{"changes", "rerandomize", "reason"}``,
    validated now and applied as asked once approved."""
    if action not in Action.values:
        raise ValidationError({"action": [f"Approvals are for {' or '.join(Action.values)}, not {action!r}."]})
    if user is not None and not may_act(user, experiment, action):
        raise PermissionDenied(f"You may not {action} experiment '{experiment.key}'.")
    try:
        with transaction.atomic():
            experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
            if action == Action.NEW_PHASE:
                phase_request = _checked_phase_request(experiment, phase_request)
            else:
                target = services.ACTION_TARGETS[action]
                if target not in services.TRANSITIONS[experiment.status] or (
                    action == "start" and experiment.status != Experiment.Status.DRAFT
                ):
                    raise ValidationError({"status": [
                        f"A {experiment.status} experiment cannot be asked to {action}."]})
            if action == "complete" and shipped_variant and not experiment.variants.filter(key=shipped_variant).exists():
                raise ValidationError({"shipped_variant": [f"No variant '{shipped_variant}' in this experiment."]})
            if action == "start":
                services.validate_variants(list(experiment.variants.values("key", "weight", "is_control", "payload")))
            pending = experiment.approval_requests.filter(action=action, status=State.PENDING).first()
            if pending is not None:
                raise ValidationError({"action": [
                    f"A {action} request is already pending (#{pending.pk}, by {pending.requester})."
                ]})
            approval = ApprovalRequest(
                experiment=experiment, action=action, shipped_variant=shipped_variant if action == "complete" else "",
                phase_request=phase_request if action == Action.NEW_PHASE else {},
                requested_by=user, requested_by_key="" if user is not None else key[:100],
                fingerprint=fingerprint(experiment), comment=comment,
            )
            approval._change_reason = services._reason(_who(user, key), f"{action} requested")
            approval.save()
            return approval
    except IntegrityError:  # a concurrent request for the same action won the race
        raise ValidationError({"action": [f"A {action} request is already pending."]}) from None


def _checked_phase_request(experiment: Experiment, phase_request: dict[str, Any] | None) -> dict[str, Any]:
    from .phases import check_request  # phases imports services; keep this module's imports flat

    if not isinstance(phase_request, dict):
        raise ValidationError({"action": [
            "A new phase is requested with its changes: use the admin's new-phase form or "
            "POST /api/v1/experiments/<key>/phases."]})
    if experiment.status not in (Experiment.Status.RUNNING, Experiment.Status.PAUSED):
        raise ValidationError({"status": [
            f"Only a running or paused experiment can start a new phase; this one is {experiment.status}."]})
    changes = dict(phase_request.get("changes") or {})
    rerandomize = bool(phase_request.get("rerandomize"))
    reason, _ = check_request(experiment, changes, rerandomize=rerandomize, reason=phase_request.get("reason", ""))
    return {"changes": json.loads(json.dumps(changes, cls=DjangoJSONEncoder)), "rerandomize": rerandomize, "reason": reason,
            "expected_phase": experiment.current_phase}


def _lock(approval_id: int) -> tuple[Experiment, ApprovalRequest]:
    """Experiment row first, then the request row (the module's lock order)."""
    experiment_id = ApprovalRequest.objects.values_list("experiment_id", flat=True).get(pk=approval_id)
    experiment = Experiment.objects.select_for_update().get(pk=experiment_id)
    approval = ApprovalRequest.objects.select_for_update().get(pk=approval_id)
    return experiment, approval


def _check_decider(approval: ApprovalRequest, user, key: str) -> None:
    if user is not None:
        if approval.requested_by_id is not None and approval.requested_by_id == user.pk:
            raise PermissionDenied("You cannot decide your own request: a second person must (four eyes).")
        if not user.has_perm(APPROVE_PERMISSION):
            raise PermissionDenied("Deciding needs the Product manager or Analyst role.")
    elif not key or (approval.requested_by_key and approval.requested_by_key == key[:100]):
        raise PermissionDenied("An API key cannot decide its own request: another key or a person must.")


def _decided(approval: ApprovalRequest, status: str, user, key: str, comment: str) -> None:
    approval.status = status
    approval.decided_by = user
    approval.decided_by_key = "" if user is not None else key[:100]
    approval.decided_at = timezone.now()
    if comment:
        approval.comment = f"{approval.comment}\n{comment}".strip()
    approval._change_reason = services._reason(_who(user, key), f"{approval.action} {status}")
    approval.save()


def approve(approval_id: int, *, user=None, key: str = "", comment: str = "") -> ApprovalRequest:
    """Approve and run the transition atomically; refused for one's own or a stale request."""
    stale = False
    with transaction.atomic():
        experiment, approval = _lock(approval_id)
        if approval.status != State.PENDING:
            raise ValidationError({"status": [f"This request is already {approval.status}."]})
        _check_decider(approval, user, key)
        if fingerprint(experiment) != approval.fingerprint:
            stale = True
            _decided(approval, State.CANCELLED, user, key, "Cancelled: the experiment changed since the request.")
        else:
            actor = _who(user, key)
            if approval.action == Action.START:
                services.start_experiment(experiment, actor=actor, approved=True)
            elif approval.action == Action.NEW_PHASE:
                from .phases import start_new_phase

                asked = approval.phase_request
                start_new_phase(experiment, asked["changes"], rerandomize=asked["rerandomize"],
                                reason=asked["reason"], actor=actor, expected_phase=asked["expected_phase"],
                                approved=True)
            else:
                services.complete_experiment(
                    experiment, shipped_variant=approval.shipped_variant or None, actor=actor, approved=True
                )
            _decided(approval, State.APPROVED, user, key, comment)
    if stale:
        raise ValidationError({"status": [
            "The experiment changed since this request was made; the request was cancelled. Ask again."
        ]})
    return approval


def reject(approval_id: int, *, user=None, key: str = "", comment: str = "") -> ApprovalRequest:
    with transaction.atomic():
        _, approval = _lock(approval_id)
        if approval.status != State.PENDING:
            raise ValidationError({"status": [f"This request is already {approval.status}."]})
        _check_decider(approval, user, key)
        _decided(approval, State.REJECTED, user, key, comment)
    return approval


def cancel(approval_id: int, *, user=None, key: str = "") -> ApprovalRequest:
    """The requester (or a superuser) withdraws a pending request."""
    with transaction.atomic():
        _, approval = _lock(approval_id)
        if approval.status != State.PENDING:
            raise ValidationError({"status": [f"This request is already {approval.status}."]})
        own = (user is not None and (approval.requested_by_id == user.pk or user.is_superuser)) or (
            user is None and key and approval.requested_by_key == key[:100])
        if not own:
            raise PermissionDenied("Only the requester can cancel a request.")
        _decided(approval, State.CANCELLED, user, key, "")
    return approval


def pending_for(experiment: Experiment) -> list[ApprovalRequest]:
    return list(experiment.approval_requests.filter(status=State.PENDING).select_related("requested_by"))


def history_entries(experiment: Experiment) -> list[dict[str, Any]]:
    """Every request and decision, oldest first, for the experiment's merged history (audit trail)."""
    entries = []
    for approval in experiment.approval_requests.select_related("requested_by", "decided_by").order_by("requested_at", "id"):
        what = approval.get_action_display() + (f" shipping {approval.shipped_variant}" if approval.shipped_variant else "")
        entries.append({"at": approval.requested_at, "who": approval.requester, "source": "approval",
                        "change": f"{what}: approval requested (#{approval.pk})", "reason": approval.comment})
        if approval.decided_at:
            entries.append({"at": approval.decided_at, "who": approval.decider, "source": "approval",
                            "change": f"{what}: {approval.status} (#{approval.pk})", "reason": approval.comment})
    return entries
