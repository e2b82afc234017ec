"""The approvals changelist: pending requests first, decided on the experiment page or here."""
from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from .models import ApprovalRequest


class PendingFirst(admin.SimpleListFilter):
    title = "status"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("pending", "Pending"), ("decided", "Decided"), ("all", "All")]

    def choices(self, changelist):
        value = self.value() or "pending"
        for lookup, title in self.lookup_choices:
            yield {"selected": value == lookup, "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                   "display": title}

    def queryset(self, request, queryset):
        value = self.value() or "pending"
        if value == "pending":
            return queryset.filter(status=ApprovalRequest.Status.PENDING)
        if value == "decided":
            return queryset.exclude(status=ApprovalRequest.Status.PENDING)
        return queryset


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    """Read-only: requests are made with the experiment's lifecycle buttons (or the API)."""

    list_display = ["id", "experiment_link", "action", "shipped_variant", "requester", "requested_at", "status",
                    "decider", "decided_at"]
    list_filter = [PendingFirst, "action"]
    list_select_related = ["experiment", "requested_by", "decided_by"]
    search_fields = ["experiment__key"]
    readonly_fields = ["experiment", "action", "shipped_variant", "requester", "requested_at", "status", "decider",
                       "decided_at", "comment"]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="experiment", ordering="experiment__key")
    def experiment_link(self, obj: ApprovalRequest):
        url = reverse("admin:experiments_experiment_change", args=[obj.experiment_id])
        return format_html('<a href="{}">{}</a> (decide there)', url, obj.experiment.key)
