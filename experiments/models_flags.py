"""Feature flags, saved audiences and per-environment experiment switches (definitions only).

Audiences and flags are shared by every environment; a flag's rules and on/off state, and an
experiment's on/off state, belong to one environment (``access.Environment``). Cross-row rules
(value types, salts fixed at creation, audiences frozen by started experiments) live in
``experiments.flags``, ``experiments.audiences`` and ``experiments.environments``.
"""
from __future__ import annotations

from decimal import Decimal

from django.db import models
from simple_history.models import HistoricalRecords

from .models import KEY_VALIDATOR, PERCENT, Experiment, history_user


class Audience(models.Model):
    """A named, reusable set of targeting conditions, combined with all (AND) or any (OR)."""

    class Match(models.TextChoices):
        ALL = "all", "all conditions hold"
        ANY = "any", "at least one condition holds"

    key = models.CharField(max_length=64, unique=True, validators=[KEY_VALIDATOR])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    match = models.CharField(max_length=8, choices=Match.choices, default=Match.ALL)
    conditions = models.JSONField(
        default=list, blank=True,
        help_text='Targeting conditions: [{"attribute": "country", "operator": "in", "values": ["DE", "FR"]}]; '
                  "none: every unit is a member.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["updated_at"], get_user=history_user)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class ExperimentAudience(models.Model):
    """An audience an experiment's units must belong to (part of its frozen analysis plan)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="audience_links")
    audience = models.ForeignKey(Audience, on_delete=models.PROTECT, related_name="experiment_links")
    position = models.PositiveIntegerField(default=0)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "audience"], name="unique_experiment_audience"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment_id}: {self.audience_id}"


class ExperimentEnvironment(models.Model):
    """Whether an experiment is on in an environment (no row: on)."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="environment_states")
    environment = models.ForeignKey("access.Environment", on_delete=models.PROTECT, related_name="+")
    enabled = models.BooleanField(default=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["environment__key"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "environment"], name="unique_experiment_environment"),
        ]

    def __str__(self) -> str:
        return f"{self.environment}: {'on' if self.enabled else 'off'}"


class Flag(models.Model):
    """A feature flag: a typed value with a default and, per environment, ordered rules."""

    class ValueType(models.TextChoices):
        BOOLEAN = "boolean", "Boolean"
        STRING = "string", "String"
        NUMBER = "number", "Number"
        JSON = "json", "JSON"

    key = models.CharField(
        max_length=64, unique=True, validators=[KEY_VALIDATOR],
        help_text="Stable identifier used by applications; fixed once created.",
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    value_type = models.CharField(max_length=8, choices=ValueType.choices, default=ValueType.BOOLEAN)
    default_value = models.JSONField(
        null=True, blank=True, help_text="Served when the flag is off or no rule matches (of the flag's type).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["updated_at"], get_user=history_user)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class FlagEnvironment(models.Model):
    """Whether a flag is on in an environment (no row: on). Off serves the default."""

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="environment_states")
    environment = models.ForeignKey("access.Environment", on_delete=models.PROTECT, related_name="+")
    enabled = models.BooleanField(default=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["environment__key"]
        constraints = [
            models.UniqueConstraint(fields=["flag", "environment"], name="unique_flag_environment"),
        ]

    def __str__(self) -> str:
        return f"{self.environment}: {'on' if self.enabled else 'off'}"


class FlagRule(models.Model):
    """One rule of a flag in one environment; the first rule that matches decides."""

    class Kind(models.TextChoices):
        FORCE = "force", "Force a value for an audience"
        UNITS = "units", "Force values for listed units"
        ROLLOUT = "rollout", "Roll a value out to a percentage"
        EXPERIMENT = "experiment", "Value from an experiment's variant"

    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="rules")
    environment = models.ForeignKey("access.Environment", on_delete=models.PROTECT, related_name="+")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = models.JSONField(null=True, blank=True, help_text="force and rollout: the value served.")
    percent = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT,
        help_text="rollout: share of the audience's units (0-100, two decimals); raising it only adds units.",
    )
    salt = models.CharField(
        max_length=128, blank=True,
        help_text="rollout: hashing salt, fixed when the rule is created (default: the flag key).",
    )
    units = models.JSONField(default=dict, blank=True, help_text='units: {"unit id": value, ...}.')
    experiment = models.ForeignKey(
        Experiment, null=True, blank=True, on_delete=models.PROTECT, related_name="flag_rules",
    )
    values = models.JSONField(default=dict, blank=True, help_text='experiment: {"variant key": value, ...}.')
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["environment__key", "position", "id"]

    def __str__(self) -> str:
        return f"r{self.pk} {self.kind}"

    @property
    def rule_id(self) -> str:
        return f"r{self.pk}"

    @property
    def percent_float(self) -> float:
        return float(self.percent if self.percent is not None else Decimal("0"))


class FlagRuleAudience(models.Model):
    """An audience a force or rollout rule requires (every listed audience must hold)."""

    rule = models.ForeignKey(FlagRule, on_delete=models.CASCADE, related_name="audience_links")
    audience = models.ForeignKey(Audience, on_delete=models.PROTECT, related_name="flag_rule_links")
    position = models.PositiveIntegerField(default=0)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "audience"], name="unique_flag_rule_audience"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.audience_id}"
