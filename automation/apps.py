from django.apps import AppConfig


class AutomationConfig(AppConfig):
    """Alerts, schedules and guarded experiments. Sits above analysis: nothing imports it."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "automation"
    verbose_name = "Automation (alerts, schedules, guards)"

    def ready(self) -> None:
        from analysis import signals

        from . import receivers

        signals.report_computed.connect(receivers.on_report_computed, dispatch_uid="automation.report_computed")
        signals.report_failed.connect(receivers.on_report_failed, dispatch_uid="automation.report_failed")
