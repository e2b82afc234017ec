"""Admin side of phases: the frozen plan is read-only, and a "Start new phase" page changes it.

Wired into ``experiments.admin`` with a few hooks (``FrozenPlanInline``, ``frozen_readonly_fields``,
``phase_urls``, ``phases_display``) so the experiment admin itself stays small.
"""
from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join

from . import approvals, plan
from .governance import requires_approval
from .models import ApprovalRequest, Experiment, ExperimentMetric, TargetingRule
from .phases import PhaseConflict, start_new_phase


def frozen_readonly_fields(obj: Experiment | None) -> list[str]:
    """The plan's own fields, read-only once the experiment has started."""
    return list(plan.PLAN_FIELDS) if obj is not None and plan.is_frozen(obj) else []


class FrozenPlanInline:
    """Mixin for the inlines of plan rows (variants, metrics, targeting): read-only once started."""

    def _frozen(self, obj) -> bool:
        return obj is not None and plan.is_frozen(obj)

    def has_add_permission(self, request, obj=None):
        return not self._frozen(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not self._frozen(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._frozen(obj) and super().has_delete_permission(request, obj)


@admin.display(description="phases")
def phases_display(model_admin, obj: Experiment | None) -> str:
    """Read-only list of the phases on the experiment page, with the link to start the next."""
    if obj is None or obj.pk is None or not obj.started_at:
        return "Phase 1 begins when the experiment starts; its analysis plan is then frozen."
    rows = format_html_join(
        "", "<li>Phase {}: {} – {}{} · {}</li>",
        (
            (p.number, date_format(p.started_at, "DATETIME_FORMAT"),
             date_format(p.ended_at, "DATETIME_FORMAT") if p.ended_at else "now",
             ", re-randomised" if p.rerandomized else "", p.reason or "")
            for p in obj.phases.order_by("number")
        ),
    )
    link = ""
    if obj.status in (Experiment.Status.RUNNING, Experiment.Status.PAUSED):
        url = reverse("admin:experiments_experiment_start_phase", args=[obj.pk])
        link = format_html(' <a href="{}">Start new phase</a> to change the frozen analysis plan.', url)
    return format_html("<ul>{}</ul>{}", rows, link)


# --- the "Start new phase" page -----------------------------------------------------------------

def _rules_text(rules: list[dict[str, Any]]) -> str:
    return json.dumps(rules, ensure_ascii=False)


class NewPhaseForm(forms.Form):
    """What a PM may change; blank or unchanged fields keep the current plan."""

    expected_phase = forms.IntegerField(widget=forms.HiddenInput)
    targeting = forms.JSONField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text='All conditions must hold, e.g. [{"attribute": "country", "operator": "in", "values": ["US", "CA"]}]. '
                  "Operators: " + ", ".join(TargetingRule.Operator.values) + ".",
    )
    significance_level = forms.FloatField(min_value=0.0001, max_value=0.5, help_text="Alpha, e.g. 0.05 for 95 % intervals.")
    correction = forms.ChoiceField(choices=Experiment.Correction.choices)
    sequential_testing = forms.BooleanField(required=False, help_text="Always-valid results, safe to look at daily.")
    cuped = forms.BooleanField(required=False, label="CUPED")
    planned_sample_size = forms.IntegerField(required=False, min_value=1, max_value=2_000_000_000)
    planned_duration_days = forms.IntegerField(required=False, min_value=1, max_value=3650)
    segment_attributes = forms.CharField(
        required=False, help_text="Comma-separated unit attributes to break results down by.",
    )
    rerandomize = forms.BooleanField(
        required=False, label="Re-randomise units",
        help_text="Recommended when targeting or weights change. Every unit is hashed afresh with a new salt, so "
                  "people who saw one variant in the old phase are reshuffled and their carry-over cannot bias "
                  "the new phase. Without it, units keep their buckets: only units whose bucket moved because "
                  "of a weight change see a different variant.",
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
                             help_text="Why the plan changes; kept with the phase and in the history.")

    def __init__(self, *args, experiment: Experiment, **kwargs):
        super().__init__(*args, **kwargs)
        self.experiment = experiment
        lists = plan.current_lists(experiment)
        for variant in lists["variants"]:
            self.fields[f"weight_{variant['key']}"] = forms.DecimalField(
                label=f"Weight of {variant['key']}" + (" (control)" if variant["is_control"] else ""),
                min_value=0, max_value=100, decimal_places=2, initial=variant["weight"],
            )
        for em in lists["metrics"]:
            self.fields[f"role_{em['metric']}"] = forms.ChoiceField(
                label=f"Role of metric {em['metric']}",
                choices=[("", "(remove)"), *ExperimentMetric.Role.choices], initial=em["role"], required=False,
            )
        self.lists = lists
        self.initial.update({
            "expected_phase": experiment.current_phase,
            "targeting": lists["targeting"],
            **{f: getattr(experiment, f) for f in plan.PLAN_FIELDS if f != "segment_attributes"},
            "segment_attributes": ", ".join(experiment.segment_attributes or []),
        })

    def changes(self) -> dict[str, Any]:
        """Only what differs from the current plan (the service then checks and applies it)."""
        data = self.cleaned_data
        out: dict[str, Any] = {}
        variants = [
            {**v, "weight": data.get(f"weight_{v['key']}", v["weight"])} for v in self.lists["variants"]
        ]
        metrics = [
            {"metric": m["metric"], "role": data.get(f"role_{m['metric']}")}
            for m in self.lists["metrics"] if data.get(f"role_{m['metric']}")
        ]
        candidates = {
            "targeting": data.get("targeting") if data.get("targeting") is not None else [],
            "variants": variants,
            "metrics": metrics,
            "segment_attributes": [a.strip() for a in (data.get("segment_attributes") or "").split(",") if a.strip()],
            **{f: data.get(f) for f in plan.PLAN_FIELDS if f != "segment_attributes"},
        }
        for field, value in candidates.items():
            if plan.differs(self.experiment, field, value, self.lists):
                out[field] = value
        return out


def start_phase_view(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    experiment = get_object_or_404(Experiment, pk=object_id)
    if not model_admin.has_change_permission(request, experiment):
        raise PermissionDenied
    change_url = reverse("admin:experiments_experiment_change", args=[experiment.pk])
    if experiment.status not in (Experiment.Status.RUNNING, Experiment.Status.PAUSED):
        messages.error(request, f"Only a running or paused experiment can start a new phase; this one is {experiment.status}.")
        return HttpResponseRedirect(change_url)
    form = NewPhaseForm(request.POST or None, experiment=experiment)
    if request.method == "POST" and form.is_valid() and requires_approval():
        try:  # four eyes: file the request; a second person's approval starts the phase as asked
            approval = approvals.request_approval(
                experiment, ApprovalRequest.Action.NEW_PHASE, user=request.user, comment=form.cleaned_data["reason"],
                phase_request={"changes": form.changes(), "rerandomize": form.cleaned_data["rerandomize"],
                               "reason": form.cleaned_data["reason"]},
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                for error in errors:
                    form.add_error(None, f"{field.replace('_', ' ')}: {error}" if field not in ("__all__", "changes") else error)
        else:
            messages.success(request, f"Approval requested (#{approval.pk}): phase {experiment.current_phase + 1} of "
                                      f"'{experiment.key}' starts when a second person approves it.")
            return HttpResponseRedirect(change_url)
    elif request.method == "POST" and form.is_valid():
        try:
            phase = start_new_phase(
                experiment, form.changes(), rerandomize=form.cleaned_data["rerandomize"],
                reason=form.cleaned_data["reason"], actor=request.user.get_username(),
                expected_phase=form.cleaned_data["expected_phase"],
            )
        except PhaseConflict as exc:
            messages.error(request, " ".join(exc.messages))
            return HttpResponseRedirect(request.path)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                for error in errors:
                    form.add_error(None, f"{field.replace('_', ' ')}: {error}" if field not in ("__all__", "changes") else error)
        else:
            messages.success(request, f"Phase {phase.number} of '{experiment.key}' started"
                                      + (" with re-randomised units." if phase.rerandomized else "."))
            return HttpResponseRedirect(change_url)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "original": experiment,
        "title": f"Start phase {experiment.current_phase + 1} of {experiment.key}",
        "form": form,
        "phases": experiment.phases.order_by("number"),
        "change_url": change_url,
    }
    return TemplateResponse(request, "admin/experiments/experiment/start_phase.html", context)


def phase_urls(model_admin: admin.ModelAdmin) -> list:
    return [
        path("<path:object_id>/phases/new/",
             model_admin.admin_site.admin_view(lambda request, object_id: start_phase_view(model_admin, request, object_id)),
             name="experiments_experiment_start_phase"),
    ]
