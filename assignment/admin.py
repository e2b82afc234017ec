from django.contrib import admin

from access.adminsafety import SafeAdminMixin

from .models import Exposure, RejectedExposure


@admin.register(Exposure)
class ExposureAdmin(SafeAdminMixin, admin.ModelAdmin):
    """Read-only: exposures come from the assignment API, never from hand edits."""

    list_display = ("unit_id", "experiment", "phase", "variant", "first_seen", "last_seen")
    list_filter = ("experiment", "phase")
    search_fields = ("unit_id",)
    list_select_related = ("experiment", "variant")
    date_hierarchy = "first_seen"
    readonly_fields = ("experiment", "phase", "variant", "unit_id", "first_seen", "last_seen", "attributes")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        """Counted units are analysis data: removed only by unit erasure (DELETE /api/v1/units/<id>)."""
        return False


@admin.register(RejectedExposure)
class RejectedExposureAdmin(admin.ModelAdmin):
    """Poison exposures set aside by the flush (docs/operations.md); inspect, then delete."""

    list_display = ("rejected_at", "reason")
    readonly_fields = ("rejected_at", "reason", "unit_hash", "item")
    date_hierarchy = "rejected_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
