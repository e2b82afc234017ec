"""The product manager's admin: define experiments, run them, see who changed what."""
from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from access.adminsafety import SafeAdminMixin
from access.roles import ROLE_NAMES

from . import admin_lifecycle, admin_phases, audit, services
from .forms import (
    ExperimentForm,
    ExperimentMetricFormSet,
    LayerForm,
    MetricForm,
    OverrideForm,
    OverrideFormSet,
    TargetingRuleForm,
    VariantForm,
    VariantFormSet,
)
from .governance import in_edit_scope, may_act
from .models import Experiment, ExperimentMetric, Layer, Metric, Override, TargetingRule, Variant

STATUS_COLOURS = {
    "draft": "#6b7280", "running": "#16a34a", "paused": "#d97706",
    "completed": "#2563eb", "archived": "#9ca3af",
}


def _locked(obj) -> bool:
    return obj is not None and obj.is_locked


class LabelledInlineMixin:
    """Tabular inlines put labels in column headers only; give every cell's input an accessible name
    (WCAG 2 AA: axe's ``label`` rule), e.g. "Weight (row 2)"."""

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)

        class LabelledFormSet(formset):
            def add_fields(self, form, index):
                super().add_fields(form, index)
                row = f"row {index + 1}" if index is not None else "new row"
                for name, field in form.fields.items():
                    label = "Delete" if name == "DELETE" else (field.label or name)
                    widget = getattr(field.widget, "widget", field.widget)  # inside RelatedFieldWidgetWrapper
                    widget.attrs.setdefault("aria-label", f"{label} ({row})")

        LabelledFormSet.__name__ = formset.__name__
        return LabelledFormSet


def _variants_frozen(obj) -> bool:
    return obj is not None and obj.variants_frozen


class VariantInline(admin_phases.FrozenPlanInline, SafeAdminMixin, LabelledInlineMixin, admin.TabularInline):
    model = Variant
    form = VariantForm
    formset = VariantFormSet
    fields = ["key", "name", "weight", "is_control", "payload", "position"]
    extra = 0
    min_num = 0

    def get_extra(self, request, obj=None, **kwargs):
        return 2 if obj is None else 0

    def has_add_permission(self, request, obj=None):
        return not _variants_frozen(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return not _variants_frozen(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not _variants_frozen(obj) and super().has_delete_permission(request, obj)


class ExperimentMetricInline(admin_phases.FrozenPlanInline, LabelledInlineMixin, admin.TabularInline):
    model = ExperimentMetric
    formset = ExperimentMetricFormSet
    fields = ["metric", "role", "non_inferiority_margin", "position"]  # a plain select: the autocomplete widget has no accessible name
    extra = 1


class TargetingRuleInline(admin_phases.FrozenPlanInline, SafeAdminMixin, LabelledInlineMixin, admin.TabularInline):
    model = TargetingRule
    form = TargetingRuleForm
    fields = ["attribute", "operator", "values", "position"]
    extra = 0


class OverrideInline(LabelledInlineMixin, admin.TabularInline):
    model = Override
    form = OverrideForm
    formset = OverrideFormSet
    fields = ["unit_id", "variant_key", "note"]
    extra = 0
    verbose_name = "QA override (forced variant for one unit)"


class LockOnPostMixin:
    """Row lock for the admin's change form (see ``get_object``)."""

    def get_object(self, request, object_id, from_field=None):
        """On a POST, lock the row (the admin's change view runs in one transaction): the form's
        checks read the status, and the save writes every column back, so a start committed in
        between must wait rather than be overwritten with the stale status."""
        if request.method == "POST" and transaction.get_connection().in_atomic_block:
            queryset = self.get_queryset(request).select_for_update(of=("self",))
            field = self.model._meta.get_field(from_field) if from_field else self.model._meta.pk
            try:
                return queryset.get(**{field.name: field.to_python(object_id)})
            except (self.model.DoesNotExist, ValidationError, ValueError):
                return None
        return super().get_object(request, object_id, from_field)


def _transition_action(name: str, label: str):
    @admin.action(permissions=["change"], description=f"{label} selected experiments")
    def action(modeladmin, request, queryset):
        for experiment in queryset:
            if not may_act(request.user, experiment, name):
                messages.error(request, f"{experiment.key}: you may not {name} this experiment.")
                continue
            try:
                services.TRANSITION_FUNCTIONS[name](experiment, actor=request.user.get_username())
            except ValidationError as e:
                for msg in e.messages:
                    messages.error(request, f"{experiment.key}: {msg}")
            else:
                messages.success(request, f"{experiment.key}: {label.lower()}ed." if not label.endswith("e") else f"{experiment.key}: {label.lower()}d.")

    action.__name__ = f"{name}_selected"
    return action


@admin.register(Experiment)
class ExperimentAdmin(SafeAdminMixin, LockOnPostMixin, SimpleHistoryAdmin):
    form = ExperimentForm
    inlines = [VariantInline, ExperimentMetricInline, TargetingRuleInline, OverrideInline]
    list_display = ["key", "name", "status_badge", "layer", "owner", "traffic_allocation", "started_at", "report_link"]
    list_filter = ["status", "layer", "owner"]
    search_fields = ["key", "name", "hypothesis"]
    list_select_related = ["layer", "owner"]
    actions = [
        _transition_action("start", "Start"),
        _transition_action("pause", "Pause"),
        _transition_action("resume", "Resume"),
        _transition_action("complete", "Complete"),
        _transition_action("archive", "Archive"),
    ]
    history_list_display = ["status", "traffic_allocation", "current_phase", "salt"]
    fieldsets = [
        (None, {"fields": ["key", "name", "hypothesis", "description", "owner", "team", "status"]}),
        ("Traffic", {"fields": ["traffic_allocation", "salt", "layer", "layer_share"]}),
        ("Analysis", {"fields": ["significance_level", "correction", "sequential_testing", "cuped",
                                 "planned_sample_size", "planned_duration_days", "segment_attributes"]}),
        ("Timeline", {"fields": ["created_at", "started_at", "paused_at", "ended_at", "archived_at", "shipped_variant",
                                  "phases_display"]}),
    ]
    phases_display = admin_phases.phases_display

    def get_readonly_fields(self, request, obj=None):
        fields = ["status", "created_at", "started_at", "paused_at", "ended_at", "archived_at", "shipped_variant",
                  "phases_display"]
        if obj is not None and obj.started_at is not None:
            fields += list(services.LOCKED_ONCE_STARTED)
        if _locked(obj):
            fields += list(services.LOCKED_WHILE_RUNNING)
        fields += admin_phases.frozen_readonly_fields(obj)
        if obj is not None and obj.status == Experiment.Status.ARCHIVED:
            fields = [f for fs in self.fieldsets for f in fs[1]["fields"]]
        return fields

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "team":  # teams are groups, but not the three role groups
            kwargs["queryset"] = Group.objects.exclude(name__in=ROLE_NAMES.values()).order_by("name")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        """Only drafts can be deleted: a started experiment's history and exposures are kept."""
        if obj is not None and obj.status != Experiment.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj) and in_edit_scope(request.user, obj)

    def has_change_permission(self, request, obj=None):
        """EXPERIMENT_EDIT_SCOPE=team: out-of-team experiments are read-only for this user."""
        return super().has_change_permission(request, obj) and in_edit_scope(request.user, obj)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Experiment):
        return format_html(
            '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px">{}</span>',
            STATUS_COLOURS.get(obj.status, "#6b7280"), obj.get_status_display(),
        )

    @admin.display(description="report")
    def report_link(self, obj: Experiment):
        return format_html('<a href="/reports/{}/">report</a>', obj.key)

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        obj._change_reason = f"{'changed' if change else 'created'} by {request.user.get_username()} in the admin"
        super().save_model(request, obj, form, change)

    def history_view(self, request, object_id, extra_context=None):
        """The History page: the combined audit trail of the experiment and its children."""
        experiment = self.get_object(request, object_id)
        if experiment is None or not self.has_view_permission(request, experiment):
            return super().history_view(request, object_id, extra_context)
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "object": experiment,
            "title": f"History: {experiment.key}", "entries": audit.experiment_history(experiment),
        }
        return TemplateResponse(request, "admin/experiments/experiment/audit_trail.html", context)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/transition/<str:action>/", view(self.transition_view),
                 name="{}_{}_transition".format(*info)),
            path("<path:object_id>/lifecycle/<str:action>/", view(self.confirm_view),
                 name="{}_{}_lifecycle".format(*info)),
            path("approvals/<int:approval_id>/<str:decision>/", view(self.decide_view),
                 name="{}_{}_decide".format(*info)),
            *admin_phases.phase_urls(self),
            *super().get_urls(),
        ]

    def transition_view(self, request, object_id, action):
        """POST (from the confirmation page): start/pause/resume/complete/archive, or request approval."""
        return admin_lifecycle.transition_view(self, request, object_id, action)

    def confirm_view(self, request, object_id, action):
        return admin_lifecycle.confirm_view(self, request, object_id, action)

    def decide_view(self, request, approval_id, decision):
        return admin_lifecycle.decide_view(self, request, approval_id, decision)

    def response_change(self, request, obj):
        """A lifecycle button submits the form: the edits are saved, then the action is confirmed."""
        action = request.POST.get("_lifecycle")
        if action:
            self.message_user(request, f"Your changes to '{obj.key}' were saved.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:experiments_experiment_lifecycle", args=[obj.pk, action]))
        return super().response_change(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        experiment = self.get_object(request, object_id)
        extra_context.update(admin_lifecycle.change_context(request, experiment))
        if experiment is not None:
            extra_context["allowed_transitions"] = extra_context["lifecycle_actions"]
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Metric)
class MetricAdmin(SafeAdminMixin, SimpleHistoryAdmin):
    form = MetricForm
    list_display = ["key", "name", "kind", "quantile", "event", "denominator_event", "direction", "cap",
                    "conversion_window_hours"]
    list_filter = ["kind", "direction"]
    search_fields = ["key", "name", "event"]


@admin.register(Layer)
class LayerAdmin(SafeAdminMixin, LockOnPostMixin, SimpleHistoryAdmin):
    form = LayerForm  # the row lock on POST covers the holdout check's read of the shares
    list_display = ["key", "name", "holdout_percent", "experiment_count"]
    search_fields = ["key", "name"]

    @admin.display(description="experiments")
    def experiment_count(self, obj: Layer) -> int:
        return obj.experiments.count()


from . import admin_approvals  # noqa: E402, F401, I001 - registers the approvals changelist
from . import admin_flags  # noqa: E402, F401, I001 - flags, audiences, experiment audiences and environments
