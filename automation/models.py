"""Alert subscriptions, alert states (once per condition), deliveries, guards and schedules."""
from __future__ import annotations

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from experiments.models import Experiment


def new_secret() -> str:
    """A per-subscription signing secret (256 bits, hex)."""
    return secrets.token_hex(32)


class AlertSubscription(models.Model):
    """Who hears about an experiment's alerts; no experiment = every experiment (global default)."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook", "Webhook (signed JSON)"
        SLACK = "slack", "Slack incoming webhook"
        EMAIL = "email", "Email"

    experiment = models.ForeignKey(
        Experiment, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Empty: a global subscription that hears every experiment.",
    )
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.WEBHOOK)
    target = models.CharField(max_length=500, help_text="An http(s) URL, or an email address.")
    secret = models.CharField(max_length=64, default=new_secret, editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        scope = self.experiment.key if self.experiment_id else "all experiments"
        return f"{self.get_channel_display()} -> {self.target} ({scope})"

    def clean(self) -> None:
        from .channels import validate_target

        validate_target(self.channel, self.target)


class AlertState(models.Model):
    """One condition of one experiment: fires when it becomes active, again only after clearing."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    active = models.BooleanField(default=False)
    phase = models.PositiveSmallIntegerField(default=1, help_text="The experiment phase it was last evaluated in.")
    fired_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["experiment", "key"], name="unique_alert_state")]

    def __str__(self) -> str:
        return f"{self.experiment_id}:{self.key} ({'active' if self.active else 'clear'})"


class Delivery(models.Model):
    """One alert sent (or being sent) to one subscription, with every attempt's outcome."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    subscription = models.ForeignKey(AlertSubscription, on_delete=models.CASCADE, related_name="deliveries")
    alert_key = models.CharField(max_length=200)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.alert_key} -> {self.subscription_id} ({self.status})"


class ExperimentAutomation(models.Model):
    """Automation settings of one experiment (kept here so experiments' models stay untouched)."""

    experiment = models.OneToOneField(Experiment, on_delete=models.CASCADE, related_name="automation")
    guarded = models.BooleanField(
        default=False,
        help_text="Pause the experiment automatically when a guardrail is breached or SRM is detected.",
    )
    report_failures = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        verbose_name = "experiment guard"

    def __str__(self) -> str:
        return f"{self.experiment_id} ({'guarded' if self.guarded else 'not guarded'})"


class ScheduledAction(models.Model):
    """A change to make at ``run_at`` (beat runs due ones every minute); a ramp is several."""

    class Action(models.TextChoices):
        START = "start"
        PAUSE = "pause"
        RESUME = "resume"
        COMPLETE = "complete"
        SET_TRAFFIC = "set_traffic", "set traffic allocation"

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        SKIPPED = "skipped"
        FAILED = "failed"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    value = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True,
        help_text="set_traffic: the traffic allocation in percent.",
    )
    run_at = models.DateTimeField(db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    reason = models.TextField(blank=True)
    phase = models.PositiveSmallIntegerField(
        null=True, blank=True, editable=False,
        help_text="The experiment's phase when this was scheduled: a traffic step of an older phase is skipped.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    executed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run_at", "id"]

    def __str__(self) -> str:
        value = f" {self.value}%" if self.value is not None else ""
        return f"{self.action}{value} at {self.run_at:%Y-%m-%d %H:%M} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        if self.phase is None and self.experiment_id:
            self.phase = Experiment.objects.filter(pk=self.experiment_id).values_list("current_phase", flat=True).first()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.action == self.Action.SET_TRAFFIC:
            if self.value is None or not (0 < self.value <= 100):
                raise ValidationError({"value": "set_traffic needs a traffic allocation in (0, 100]."})
        elif self.value is not None:
            raise ValidationError({"value": f"{self.action} takes no value."})
