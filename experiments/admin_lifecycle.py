"""The experiment page's lifecycle: confirmation pages, permission checks and approvals.

Buttons on the change form submit the form itself (``_lifecycle=<action>``), so typed edits are
saved (or refused with their errors) before anything else happens; only then does the admin show
a confirmation page that says what the action will do. Confirming POSTs to the transition view,
which runs the service -- or, with ``REQUIRE_APPROVAL``, files an approval request.
"""
from __future__ import annotations

import json
from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from . import approvals, services
from .governance import APPROVE_PERMISSION, may_act, requires_approval
from .models import ApprovalRequest, Experiment

PAST = {"start": "started", "pause": "paused", "resume": "resumed", "complete": "completed", "archive": "archived"}
APPROVED_ACTIONS = ("start", "complete")


def _pct(value) -> str:
    return f"{Decimal(str(value)).normalize():f} %"


def _rule(rule) -> str:
    values = ", ".join(str(v) for v in rule.values)
    return f"{rule.attribute} {rule.get_operator_display()}{' ' + values if values else ''}"


def summary(experiment: Experiment, action: str) -> list[str]:
    """What the action will do, in sentences, for the confirmation page."""
    variants = list(experiment.variants.all())
    if action == "start":
        metrics = list(experiment.experiment_metrics.select_related("metric"))
        primary = [m.metric.key for m in metrics if m.role == "primary"]
        rules = list(experiment.targeting_rules.all())
        lines = [
            f"Start: {len(variants)} variants ({', '.join(f'{v.key} {_pct(v.weight)}' for v in variants)}), "
            f"{_pct(experiment.traffic_allocation)} of traffic"
            + (f" within {_pct(experiment.layer_share)} of layer {experiment.layer.key}" if experiment.layer_id else "")
            + ".",
            "Targeting: " + ("; ".join(_rule(r) for r in rules) if rules else "every unit is eligible") + ".",
            f"Metrics: {len(metrics)} ({', '.join(primary) or 'no'} primary).",
            "Analysis plan frozen: "
            f"alpha {experiment.significance_level}, {experiment.get_correction_display()}, "
            f"sequential testing {'on' if experiment.sequential_testing else 'off'}, "
            f"CUPED {'on' if experiment.cuped else 'off'}, planned sample size "
            + (f"{experiment.planned_sample_size:,} units" if experiment.planned_sample_size else "not set")
            + ".",
            "The key and salt lock for good; variants, weights and the layer share lock while it runs.",
        ]
    elif action == "pause":
        lines = ["Pause: every unit gets the control until you resume; units keep their buckets and return "
                 "to the same variant on resume. Exposures stop being recorded."]
    elif action == "resume":
        lines = [f"Resume: units are enrolled again ({_pct(experiment.traffic_allocation)} of traffic), "
                 "each in the variant it had before."]
    elif action == "complete":
        lines = ["Complete: enrolment stops for good and the report keeps the data collected so far.",
                 "If you ship a variant, every unit -- all traffic, whatever the targeting -- gets it from now "
                 "on; with no variant shipped every unit gets the control."]
    else:
        lines = ["Archive: the experiment becomes read-only; a shipped variant keeps being served."]
    if action in APPROVED_ACTIONS and requires_approval():
        lines.append("This platform requires a second person's approval: confirming sends a request; nothing "
                     "changes until a product manager or analyst other than you approves it.")
    return lines


def change_url(experiment: Experiment) -> str:
    return reverse("admin:experiments_experiment_change", args=[experiment.pk])


def confirm_view(modeladmin, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
    """GET: the confirmation page for one action."""
    experiment = get_object_or_404(Experiment, pk=object_id)
    if action not in services.allowed_actions(experiment):
        messages.error(request, f"A {experiment.status} experiment cannot {action}.")
        return HttpResponseRedirect(change_url(experiment))
    if not may_act(request.user, experiment, action):
        raise PermissionDenied
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.opts,
        "original": experiment,
        "title": f"{action.capitalize()} experiment “{experiment.key}”?",
        "action": action,
        "lines": summary(experiment, action),
        "variants": [(v.key, json.dumps(v.payload)) for v in experiment.variants.all()],
        "needs_approval": action in APPROVED_ACTIONS and requires_approval(),
        "change_url": change_url(experiment),
    }
    return TemplateResponse(request, "admin/experiments/experiment/lifecycle_confirm.html", context)


def transition_view(modeladmin, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
    """POST from the confirmation page: run the action, or request its approval."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    experiment = get_object_or_404(Experiment, pk=object_id)
    if action not in services.TRANSITION_FUNCTIONS or not may_act(request.user, experiment, action):
        messages.error(request, "That action is not allowed.")
        return HttpResponseRedirect(change_url(experiment))
    shipped = request.POST.get("shipped_variant", "") if action == "complete" else ""
    try:
        if action in APPROVED_ACTIONS and requires_approval():
            approval = approvals.request_approval(
                experiment, action, user=request.user, shipped_variant=shipped, comment=request.POST.get("comment", ""),
            )
            messages.success(request, f"Approval requested (#{approval.pk}): another product manager or analyst "
                                      f"must approve it before '{experiment.key}' is {PAST[action]}.")
        else:
            kwargs = {"shipped_variant": shipped or None} if action == "complete" else {}
            services.TRANSITION_FUNCTIONS[action](experiment, actor=request.user.get_username(), **kwargs)
            messages.success(request, f"Experiment '{experiment.key}' {PAST[action]}"
                                      + (f", shipping '{shipped}'." if shipped else "."))
    except PermissionDenied as e:
        messages.error(request, str(e) or "That action is not allowed.")
    except ValidationError as e:
        for msg in e.messages:
            messages.error(request, msg)
    return HttpResponseRedirect(change_url(experiment))


def decide_view(modeladmin, request: HttpRequest, approval_id: str, decision: str) -> HttpResponse:
    """POST: approve, reject or cancel an approval request (buttons on the experiment page and list)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    approval = get_object_or_404(ApprovalRequest, pk=approval_id)
    functions = {"approve": approvals.approve, "reject": approvals.reject, "cancel": approvals.cancel}
    if decision not in functions:
        messages.error(request, "Unknown decision.")
    else:
        kwargs = {"comment": request.POST.get("comment", "")} if decision != "cancel" else {}
        try:
            functions[decision](approval.pk, user=request.user, **kwargs)
            word = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}[decision]
            messages.success(request, f"Request #{approval.pk} ({approval.get_action_display().lower()} "
                                      f"'{approval.experiment.key}') {word}.")
        except PermissionDenied as e:
            messages.error(request, str(e) or "That decision is not allowed.")
        except ValidationError as e:
            for msg in e.messages:
                messages.error(request, msg)
    return HttpResponseRedirect(request.POST.get("next") if request.POST.get("next", "").startswith("/admin/")
                                else change_url(approval.experiment))


def change_context(request: HttpRequest, experiment: Experiment | None) -> dict:
    """Context for the change/add page: lifecycle buttons the user may use, pending approvals."""
    if experiment is None:
        return {"lifecycle_actions": [], "pending_approvals": []}
    pending = approvals.pending_for(experiment)
    user = request.user
    return {
        "lifecycle_actions": [a for a in services.allowed_actions(experiment) if may_act(user, experiment, a)],
        "variant_keys": [v.key for v in experiment.variants.all()],
        "pending_approvals": [
            {"obj": a, "can_decide": user.has_perm(APPROVE_PERMISSION) and a.requested_by_id != user.pk,
             "can_cancel": a.requested_by_id == user.pk or user.is_superuser}
            for a in pending
        ],
        "requires_approval": requires_approval(),
    }
