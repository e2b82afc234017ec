"""Admin: subscriptions (secret shown once, then to superusers only), read-only deliveries,
guards and scheduled actions."""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from .models import AlertState, AlertSubscription, Delivery, ExperimentAutomation, ScheduledAction


@admin.register(AlertSubscription)
class AlertSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("id", "channel", "target", "experiment", "active", "created_at")
    list_filter = ("channel", "active")
    search_fields = ("target", "experiment__key")
    autocomplete_fields = ("experiment",)
    @admin.display(description="secret")
    def secret_hidden(self, obj: AlertSubscription) -> str:
        return "(hidden: shown once at creation, readable by superusers only)"

    def get_readonly_fields(self, request, obj=None):
        return ("secret",) if obj is not None and request.user.is_superuser else ("secret_hidden",)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change and obj.channel == AlertSubscription.Channel.WEBHOOK:
            messages.warning(request, f"Signing secret of this webhook (shown once, keep it safe): {obj.secret}")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "alert_key", "subscription", "status", "attempts", "response_code", "created_at",
                    "delivered_at")
    list_filter = ("status",)
    search_fields = ("alert_key",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AlertState)
class AlertStateAdmin(DeliveryAdmin):
    list_display = ("experiment", "key", "active", "fired_at", "cleared_at")
    list_filter = ("active",)
    search_fields = ("key", "experiment__key")


@admin.register(ExperimentAutomation)
class ExperimentAutomationAdmin(admin.ModelAdmin):
    list_display = ("experiment", "guarded", "report_failures")
    autocomplete_fields = ("experiment",)


#: The permission a person needs to schedule each action (the same as doing it now).
ACTION_PERMISSIONS = {
    "start": "experiments.start_experiment", "pause": "experiments.start_experiment",
    "resume": "experiments.start_experiment", "complete": "experiments.complete_experiment",
    "set_traffic": "experiments.change_experiment",
}


@admin.register(ScheduledAction)
class ScheduledActionAdmin(admin.ModelAdmin):
    list_display = ("experiment", "action", "value", "run_at", "status", "reason", "created_by")
    list_filter = ("status", "action")
    autocomplete_fields = ("experiment",)
    readonly_fields = ("status", "reason", "executed_at", "created_by", "phase")

    def get_form(self, request, obj=None, change=False, **kwargs):
        base = super().get_form(request, obj, change=change, **kwargs)

        class Form(base):
            def clean(self):
                data = super().clean()
                needed = ACTION_PERMISSIONS.get(data.get("action") or "")
                if needed and not request.user.has_perm(needed):
                    raise ValidationError({"action": "You may not do this action yourself, so you may not schedule it."})
                return data

        return Form

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
