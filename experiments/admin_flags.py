"""Admin for feature flags (rules per environment), saved audiences (with where each is used)
and the experiment page's audiences and per-environment switches."""
from __future__ import annotations

import logging

from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from access.adminsafety import SafeAdminMixin
from access.models import Environment

from . import admin_phases, audiences, flag_audit
from .admin import ExperimentAdmin, LabelledInlineMixin, LockOnPostMixin
from .forms_flags import AudienceForm, FlagForm, FlagRuleForm, FlagRuleFormSet, show_typed
from .models_flags import (
    Audience,
    ExperimentAudience,
    ExperimentEnvironment,
    Flag,
    FlagEnvironment,
    FlagRule,
)
from .services import _reason

logger = logging.getLogger(__name__)


def _actor(request) -> str:
    return f"{request.user.get_username()} in the admin"


class _HistoryPage:
    """The History page shows the combined trail (``experiments.flag_audit``)."""

    trail = staticmethod(lambda obj: [])

    def history_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is None or not self.has_view_permission(request, obj):
            return super().history_view(request, object_id, extra_context)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "object": obj,
                   "title": f"History: {obj}", "entries": self.trail(obj)}
        return TemplateResponse(request, "admin/experiments/experiment/audit_trail.html", context)


class FlagEnvironmentInline(LabelledInlineMixin, admin.TabularInline):
    model = FlagEnvironment
    fields = ["environment", "enabled"]
    extra = 0
    verbose_name = "switch in an environment (no row: on)"
    verbose_name_plural = "On/off per environment (off: everyone gets the default)"


class FlagRuleInline(SafeAdminMixin, LabelledInlineMixin, admin.StackedInline):
    """The rules of one environment (one such inline per environment; see ``FlagAdmin``)."""

    model = FlagRule
    form = FlagRuleForm
    formset = FlagRuleFormSet
    fields = ["position", "kind", "audiences", "value_text", "percent", "salt", "units_text", "experiment",
              "values_text"]
    extra = 0
    environment_key = "production"

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.environment_key = self.environment_key
        return formset

    # Read-only views (analysts) show the typed boxes through these.
    @admin.display(description="value")
    def value_text(self, rule: FlagRule) -> str:
        return show_typed(rule.flag.value_type, rule.value) if rule.kind in ("force", "rollout") else "-"

    @admin.display(description="units")
    def units_text(self, rule: FlagRule) -> str:
        return ", ".join(f"{u} = {show_typed(rule.flag.value_type, v)}" for u, v in (rule.units or {}).items()) or "-"

    @admin.display(description="values per variant")
    def values_text(self, rule: FlagRule) -> str:
        return ", ".join(f"{k} = {show_typed(rule.flag.value_type, v)}" for k, v in (rule.values or {}).items()) or "-"

    @admin.display(description="audiences")
    def audiences(self, rule: FlagRule) -> str:
        return ", ".join(link.audience.key for link in rule.audience_links.select_related("audience")) or "everyone"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(environment__key=self.environment_key).prefetch_related(
            "audience_links")


def rule_inline_for(environment: Environment) -> type[FlagRuleInline]:
    return type(f"FlagRuleInline_{environment.key}", (FlagRuleInline,), {
        "environment_key": environment.key,
        "verbose_name": f"rule in {environment.name}",
        "verbose_name_plural": f"Rules in {environment.name} ({environment.key}): first match wins",
    })


@admin.register(Flag)
class FlagAdmin(_HistoryPage, SafeAdminMixin, LockOnPostMixin, SimpleHistoryAdmin):
    form = FlagForm
    list_display = ["key", "name", "value_type", "default_shown", "rule_counts"]
    list_filter = ["value_type"]
    search_fields = ["key", "name", "description"]
    fields = ["key", "name", "description", "value_type", "default_text"]
    trail = staticmethod(flag_audit.flag_history)

    def get_inlines(self, request, obj):
        return [FlagEnvironmentInline, *(rule_inline_for(env) for env in Environment.objects.order_by("key"))]

    @admin.display(description="default")
    def default_shown(self, obj: Flag) -> str:
        return show_typed(obj.value_type, obj.default_value)[:60]

    @admin.display(description="Default value")
    def default_text(self, obj: Flag) -> str:  # read-only views (analysts)
        return show_typed(obj.value_type, obj.default_value)

    @admin.display(description="rules per environment")
    def rule_counts(self, obj: Flag) -> str:
        counts: dict[str, int] = {}
        for key in obj.rules.values_list("environment__key", flat=True):
            counts[key] = counts.get(key, 0) + 1
        return ", ".join(f"{k}: {n}" for k, n in sorted(counts.items())) or "none"

    def save_model(self, request, obj, form, change):
        obj._change_reason = _reason(_actor(request), "changed" if change else "created")
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        formset.actor = _actor(request)
        formset.save()


@admin.register(Audience)
class AudienceAdmin(_HistoryPage, SafeAdminMixin, LockOnPostMixin, SimpleHistoryAdmin):
    form = AudienceForm
    list_display = ["key", "name", "match", "condition_count", "used_by_summary"]
    search_fields = ["key", "name", "description"]
    fields = ["key", "name", "description", "match", "conditions", "used_by"]
    readonly_fields = ["used_by"]
    trail = staticmethod(flag_audit.audience_history)

    @admin.display(description="conditions")
    def condition_count(self, obj: Audience) -> int:
        return len(obj.conditions or [])

    @admin.display(description="used by")
    def used_by_summary(self, obj: Audience) -> str:
        used = audiences.usage(obj)
        return f"{len(used['experiments'])} experiment(s), {len(used['flags'])} flag(s)"

    @admin.display(description="Used by")
    def used_by(self, obj: Audience | None):
        if obj is None or obj.pk is None:
            return "Not used yet."
        used = audiences.usage(obj)
        if not used["experiments"] and not used["flags"]:
            return "Not used by any experiment or flag."
        experiments = {e.key: e.pk for e in audiences.experiments_using(obj)}
        flag_ids = dict(Flag.objects.filter(key__in=[f["key"] for f in used["flags"]]).values_list("key", "pk"))
        items = [
            (reverse("admin:experiments_experiment_change", args=[experiments[e["key"]]]),
             f"Experiment {e['key']}", f" ({e['status']}{': conditions frozen' if e['status'] in ('running', 'paused') else ''})")
            for e in used["experiments"]
        ] + [
            (reverse("admin:experiments_flag_change", args=[flag_ids[f["key"]]]), f"Flag {f['key']}",
             f" (rules in {', '.join(f['environments'])})")
            for f in used["flags"]
        ]
        return format_html('<ul class="audience-usage">{}</ul>',
                           format_html_join("", '<li><a href="{}">{}</a>{}</li>', items))

    def save_model(self, request, obj, form, change):
        reason = "changed" if change else "created"
        if change and {"match", "conditions"} & set(form.changed_data):
            flag_keys = list(audiences.flags_using(obj).values_list("key", flat=True))
            if flag_keys:
                reason += f"; affects flags {', '.join(flag_keys)}"
                logger.info("audience %s changed by %s; affects flags %s", obj.key, _actor(request), ", ".join(flag_keys))
        obj._change_reason = _reason(_actor(request), reason)
        super().save_model(request, obj, form, change)


class OptionalInlineFormSet(BaseInlineFormSet):
    """An inline added to the experiment page after scripts that post it were written: a POST
    without this inline's management form submitted no change to it, so its rows stay as they are
    (any other management-form problem is still an error)."""

    def _submitted(self) -> bool:
        return not self.is_bound or f"{self.prefix}-TOTAL_FORMS" in self.data

    def full_clean(self):
        if self._submitted():
            return super().full_clean()
        self._errors, self._non_form_errors = [], self.error_class()

    @property
    def forms(self):
        return super().forms if self._submitted() else []

    def save(self, commit=True):
        if self._submitted():
            return super().save(commit)
        self.new_objects, self.changed_objects, self.deleted_objects = [], [], []
        return []


class ExperimentAudienceInline(admin_phases.FrozenPlanInline, LabelledInlineMixin, admin.TabularInline):
    model = ExperimentAudience
    formset = OptionalInlineFormSet
    fields = ["audience", "position"]
    extra = 0
    verbose_name = "audience (the unit must be in every one)"
    verbose_name_plural = "Audiences (part of the analysis plan: frozen once started)"


class ExperimentEnvironmentInline(LabelledInlineMixin, admin.TabularInline):
    model = ExperimentEnvironment
    formset = OptionalInlineFormSet
    fields = ["environment", "enabled"]
    extra = 0
    verbose_name = "switch in an environment (no row: on)"
    verbose_name_plural = "On/off per environment (off: everyone gets the control there)"


ExperimentAdmin.inlines = [*ExperimentAdmin.inlines, ExperimentAudienceInline, ExperimentEnvironmentInline]
