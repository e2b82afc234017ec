"""The analysis side of the admin: reports on the experiment page, snapshots and events.

``experiments.admin.ExperimentAdmin`` knows nothing of analysis; here it is replaced by a subclass
that adds a "Recompute now" button and action, the latest result in the list, and a sample-size
calculator on the experiment page. Snapshots and events are read-only.
"""
from __future__ import annotations

import json
import math
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.db.models.fields.json import KT
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from access.adminsafety import SafeAdminMixin
from experiments.admin import ExperimentAdmin, MetricAdmin
from experiments.models import Experiment, Metric

from . import selectors, tasks
from .models import Conclusion, Event, ReportSnapshot, ShareLink
from .stats import StatsInputError, sample_size

RECOMMENDATION_LABELS = {
    "ship": ("Ship", "#15803d"),
    "do_not_ship": ("Do not ship", "#b91c1c"),
    "keep_running": ("Keep running", "#b45309"),
    "invalid_srm": ("Invalid (SRM)", "#b91c1c"),
}


def _refresh(request, experiment: Experiment) -> None:
    try:
        ticket = tasks.request_refresh(experiment)
    except tasks.QueueUnavailable:
        messages.error(request, f"{experiment.key}: the task queue is unavailable; try again shortly.")
        return
    if ticket.state == "SUCCESS":
        messages.success(request, f"{experiment.key}: report recomputed.")
    elif ticket.state == "FAILURE":
        error = (tasks.task_status(ticket.task_id) or {}).get("error") or "see the logs"
        messages.error(request, f"{experiment.key}: the recomputation failed: {error}")
    else:
        word = "already under way" if ticket.deduplicated else "queued"
        messages.info(request, f"{experiment.key}: recomputation {word} (task {ticket.task_id}).")


@admin.action(permissions=["recompute"], description="Recompute the reports of the selected experiments")
def recompute_selected(modeladmin, request, queryset):
    if not request.user.has_perm("experiments.recompute_report"):
        messages.error(request, "Recomputing needs the Analyst role.")
        return
    for experiment in queryset:
        _refresh(request, experiment)


def sample_size_defaults(experiment: Experiment, snapshot: ReportSnapshot | None) -> dict[str, Any]:
    """Calculator inputs prefilled from the experiment and, when there is one, its latest report."""
    defaults: dict[str, Any] = {
        "baseline": 0.1, "mde": 0.05, "alpha": experiment.significance_level, "power": 0.8,
        "n_variants": max(2, experiment.variants.count()), "sd": "", "metric": None,
    }
    primary = experiment.experiment_metrics.filter(role="primary").select_related("metric").first()
    if primary is not None:
        defaults["metric"] = primary.metric.name
    if snapshot is None or primary is None:
        return defaults
    for m in snapshot.payload.get("metrics") or []:
        if m.get("metric") != primary.metric.key:
            continue
        control = next((v for v in m.get("variants") or [] if v.get("is_control")), {})
        mean, sd = control.get("mean"), control.get("sd")
        if isinstance(mean, int | float) and math.isfinite(mean) and mean != 0:
            defaults["baseline"] = round(mean, 6)
            if m.get("kind") != "conversion" and isinstance(sd, int | float) and sd > 0:
                defaults["sd"] = round(sd, 6)
    return defaults


class ReportingExperimentAdmin(ExperimentAdmin):
    change_form_template = "admin/analysis/experiment/change_form.html"
    actions = [*ExperimentAdmin.actions, recompute_selected]
    list_display = [*ExperimentAdmin.list_display, "latest_result"]

    def get_queryset(self, request):
        latest = ReportSnapshot.objects.filter(experiment=OuterRef("pk")).order_by("-computed_at", "-id")
        return super().get_queryset(request).annotate(
            _recommendation=Subquery(latest.annotate(r=KT("payload__decision__recommendation")).values("r")[:1])
        )

    @admin.display(description="latest result")
    def latest_result(self, obj: Experiment):
        value = getattr(obj, "_recommendation", None)
        if not value:
            return "–"
        label, colour = RECOMMENDATION_LABELS.get(value, (value, "#475569"))
        return format_html('<span style="color:{};font-weight:600">{}</span>', colour, label)

    def has_recompute_permission(self, request, obj=None) -> bool:
        """Recomputing writes a snapshot: the Analyst role's permission (access.roles)."""
        return request.user.has_perm("experiments.recompute_report")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("<path:object_id>/recompute/", self.admin_site.admin_view(self.recompute_view),
                 name=f"{info[0]}_{info[1]}_recompute"),
            path("<path:object_id>/sample-size/", self.admin_site.admin_view(self.sample_size_view),
                 name=f"{info[0]}_{info[1]}_sample_size"),
            path("sample-size.json", self.admin_site.admin_view(self.sample_size_json),
                 name=f"{info[0]}_{info[1]}_sample_size_json"),
            *super().get_urls(),
        ]

    def recompute_view(self, request, object_id):
        """The "Recompute now" button on the experiment page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        experiment = get_object_or_404(Experiment, pk=object_id)
        if not request.user.has_perm("experiments.recompute_report"):
            messages.error(request, "Recomputing needs the Analyst role.")
        else:
            _refresh(request, experiment)
        return HttpResponseRedirect(reverse("admin:experiments_experiment_change", args=[experiment.pk]))

    def sample_size_view(self, request, object_id):
        """Units needed for an effect: the statistics engine's calculator, prefilled."""
        experiment = get_object_or_404(Experiment, pk=object_id)
        if not self.has_view_permission(request, experiment):
            return HttpResponseRedirect(reverse("admin:index"))
        snapshot = selectors.latest_snapshot(experiment)
        values = sample_size_defaults(experiment, snapshot)
        result = error = None
        if "baseline" in request.GET:
            values.update({k: request.GET.get(k, "") for k in ("baseline", "mde", "alpha", "power", "n_variants", "sd")})
            try:
                args = {k: float(values[k]) if values[k] != "" else None for k in ("baseline", "mde", "alpha", "power", "sd")}
                n_variants = int(values["n_variants"])
            except (TypeError, ValueError):
                error = "Every field must be a number."
            else:
                try:
                    result = sample_size(
                        args["baseline"], args["mde"], alpha=args["alpha"], power=args["power"],
                        sd=args["sd"], n_variants=n_variants,
                    )
                except StatsInputError as exc:
                    error = f"{exc.field}: {exc.message}"
        days = None
        if result and snapshot is not None:
            daily = (snapshot.payload.get("power") or {}).get("daily_units")
            if isinstance(daily, int | float) and daily > 0:
                days = math.ceil(result["total"] / daily)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": experiment,
            "title": f"Sample size for {experiment.key}",
            "values": values,
            "result": result,
            "error": error,
            "days": days,
        }
        return TemplateResponse(request, "admin/analysis/experiment/sample_size.html", context)

    def sample_size_json(self, request):
        """The calculator panel (add and change pages): per variant, total and eligible traffic."""
        if not (self.has_view_permission(request) or self.has_add_permission(request)):
            raise PermissionDenied
        body, code = calculator_answer(request.GET)
        return JsonResponse(body, status=code)

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "calculator": True,
                         "sample_size_defaults": {"baseline": 0.1, "mde": 0.05, "power": 0.8, "sd": ""}}
        return super().add_view(request, form_url, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        experiment = self.get_object(request, object_id)
        if experiment is not None:
            extra_context["calculator"] = True
            extra_context["silent_metrics"] = silent_metrics(
                [em.metric for em in experiment.experiment_metrics.select_related("metric")])
            snapshot = selectors.latest_snapshot(experiment)
            decision = (snapshot.payload.get("decision") or {}) if snapshot else {}
            extra_context["latest_snapshot"] = snapshot
            extra_context["latest_decision"] = decision
            extra_context["latest_label"] = RECOMMENDATION_LABELS.get(decision.get("recommendation"), ("", ""))[0]
            extra_context["sample_size_defaults"] = sample_size_defaults(experiment, snapshot)
        return super().change_view(request, object_id, form_url, extra_context)


def _count(number: int) -> str:
    return f"{number:,}"


def calculator_answer(query) -> tuple[dict[str, Any], int]:
    """Sample size for the admin's calculator, with the design's multiple-comparison penalty.

    ``comparisons`` = (variants - 1) x primary metrics. The stats engine already splits alpha over
    the variants; for the metrics the plan uses the Bonferroni bound alpha / primary metrics, which
    is what Holm's first step and Benjamini-Hochberg's strictest step use, so the plan holds for
    either correction (conservative for BH). ``traffic`` (the allocation, percent) turns enrolled
    units into the eligible units that must arrive.
    """
    names = ("baseline", "mde", "alpha", "power", "sd", "n_variants", "primary", "traffic")
    values = {k: (query.get(k) or "").strip() for k in names}
    try:
        args = {k: float(values[k]) if values[k] else None for k in names}
    except ValueError:
        return {"error": "Every field must be a number."}, 400
    bad = [k for k, v in args.items() if v is not None and not math.isfinite(v)]
    if bad:
        return {"error": f"{bad[0]}: must be a finite number."}, 400
    if not 2 <= (args["n_variants"] or 2) <= 1000 or not 1 <= (args["primary"] or 1) <= 100:
        return {"error": "n_variants: 2 to 1000; primary: 1 to 100 metrics."}, 400
    n_variants = int(args["n_variants"] or 2)
    primary = max(1, int(args["primary"] or 1))
    traffic = args["traffic"] if args["traffic"] is not None else 100.0
    if not 0 < traffic <= 100 or not math.isfinite(traffic):
        return {"error": "traffic allocation: must be above 0 and at most 100 %."}, 400
    alpha = args["alpha"] if args["alpha"] is not None else 0.05
    try:
        result = sample_size(
            args["baseline"] if args["baseline"] is not None else 0.1, args["mde"] if args["mde"] is not None else 0.05,
            alpha=alpha / primary, power=args["power"] if args["power"] is not None else 0.8,
            sd=args["sd"], n_variants=n_variants,
        )
    except StatsInputError as exc:
        return {"error": f"{exc.field}: {exc.message}"}, 400
    total = int(result["total"])
    eligible = math.ceil(total * 100 / traffic)
    comparisons = (n_variants - 1) * primary
    alpha_cmp = alpha / comparisons
    return {
        "per_variant": int(result["per_variant"]), "total": total, "eligible": eligible,
        "comparisons": comparisons, "alpha_per_comparison": alpha_cmp,
        "text": (f"{_count(int(result['per_variant']))} units per variant, {_count(total)} in total; at "
                 f"{traffic:g} % traffic allocation {_count(eligible)} eligible units must arrive. "
                 f"{comparisons} comparison{'s' if comparisons != 1 else ''}, alpha {alpha_cmp:.4g} each."),
    }, 200


def silent_metrics(metrics: list[Metric]) -> list[dict[str, str]]:
    """Metrics whose event (or denominator event) was never received: a typo or a missing integration."""
    wanted = [e for metric in metrics for e in (metric.event, metric.denominator_event) if e]
    received = selectors.received_event_names(wanted)
    if received is None:  # the store is unreachable: no warning rather than a false one
        return []
    out = []
    for metric in metrics:
        for event in filter(None, (metric.event, metric.denominator_event)):
            if event not in received:
                out.append({"metric": metric.key, "event": event})
    return out


class EventCheckingMetricAdmin(MetricAdmin):
    """The metric list says which metrics count events that never arrived."""

    list_display = [*MetricAdmin.list_display, "events_received"]

    @admin.display(description="events received")
    def events_received(self, obj: Metric):
        missing = [e["event"] for e in silent_metrics([obj])]
        if not missing:
            return "yes"
        return format_html('<strong class="errornote-inline" style="color:#b91c1c">⚠ never received: {}</strong>',
                           ", ".join(missing))


if admin.site.is_registered(Metric):
    admin.site.unregister(Metric)
admin.site.register(Metric, EventCheckingMetricAdmin)

if admin.site.is_registered(Experiment):
    admin.site.unregister(Experiment)
admin.site.register(Experiment, ReportingExperimentAdmin)


@admin.register(ReportSnapshot)
class ReportSnapshotAdmin(SafeAdminMixin, admin.ModelAdmin):
    """Read-only: snapshots are written by the report task only."""

    list_display = ["experiment", "phase", "computed_at", "recommendation", "data_to", "duration_ms", "task_id"]
    list_filter = ["experiment"]
    list_select_related = ["experiment"]
    date_hierarchy = "computed_at"
    search_fields = ["experiment__key", "task_id"]
    fields = ["experiment", "computed_at", "data_from", "data_to", "task_id", "duration_ms", "pretty_payload"]
    readonly_fields = fields

    def get_queryset(self, request):
        # The list shows one key of each payload: don't load whole payloads for it.
        # (the detail page loads the deferred payload on access).
        return super().get_queryset(request).defer("payload").annotate(
            _recommendation=KT("payload__decision__recommendation"))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="recommendation")
    def recommendation(self, obj: ReportSnapshot):
        value = getattr(obj, "_recommendation", None)
        return RECOMMENDATION_LABELS.get(value, (value or "–", ""))[0]

    @admin.display(description="payload")
    def pretty_payload(self, obj: ReportSnapshot):
        return format_html('<pre style="max-height:600px;overflow:auto">{}</pre>', json.dumps(obj.payload, indent=2))


@admin.register(Event)
class EventAdmin(SafeAdminMixin, admin.ModelAdmin):
    """Read-only view of ingested outcomes, for debugging an integration."""

    list_display = ["event", "unit_id", "value", "timestamp", "received_at"]
    search_fields = ["=unit_id", "=event_id", "=event"]
    readonly_fields = ["event_id", "unit_id", "event", "value", "timestamp", "properties", "received_at"]
    show_full_result_count = False
    ordering = ["-id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        from . import clickhouse

        if clickhouse.enabled():  # this table stays empty: say where the events are
            messages.info(request, "Events are stored in ClickHouse (ANALYTICS_BACKEND=clickhouse), not in this "
                                   "table; query the ClickHouse table of the same name to inspect them.")
        return super().changelist_view(request, extra_context)


@admin.register(Conclusion)
class ConclusionAdmin(SimpleHistoryAdmin):
    """Conclusions, read-only with their history: they are written on the report page
    (``/reports/<key>/conclusion/``), through ``analysis.conclusions.save_conclusion``."""

    list_display = ("experiment", "outcome", "tags", "updated_at", "updated_by")
    list_filter = ("outcome",)
    search_fields = ("experiment__key", "summary", "tags")
    readonly_fields = ("experiment", "outcome", "summary", "tags", "links", "updated_by", "created_at",
                       "updated_at", "edit_link")

    @admin.display(description="Edit")
    def edit_link(self, obj: Conclusion) -> str:
        return format_html('<a href="{}">Edit on the report page</a>',
                           reverse("report-conclusion", args=[obj.experiment.key]))

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    """Share links, read-only (created and revoked on the report page)."""

    list_display = ("experiment", "created_by", "created_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    readonly_fields = ("experiment", "created_by", "created_at", "expires_at", "revoked_at", "revoked_by")
    exclude = ("token",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
