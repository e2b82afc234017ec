"""Experiment definitions: what is tested, on whom, and how success is measured.

Models hold data and field-level invariants only; rules that span several rows (weights that sum
to 100 %, status transitions, locks while running) live in ``experiments.services`` so the admin,
the API and tasks enforce them identically.
"""
from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from simple_history.models import HistoricalRecords

from access.roles import EXPERIMENT_PERMISSIONS

PERCENT = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))]
KEY_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]{0,63}$",
    "Use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit.",
)
EVENT_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
    "Event names are 1-128 characters: letters, digits, '_', '.', ':' or '-'.",
)

def history_user(instance=None, request=None, **kwargs):
    """Who made a change: the logged-in person; API-key changes are named in the change reason."""
    from django.contrib.auth.models import AbstractBaseUser

    user = getattr(request, "user", None)
    return user if isinstance(user, AbstractBaseUser) else None


#: Layer buckets: a layer hashes each unit into one of this many buckets.
LAYER_BUCKETS = 10_000


class Layer(models.Model):
    """A namespace whose experiments never share a unit, with an optional holdout."""

    key = models.CharField(max_length=64, unique=True, validators=[KEY_VALIDATOR])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    salt = models.CharField(
        max_length=128, blank=True,
        help_text="Hashing salt; defaults to the key. Changing it reshuffles the layer's units.",
    )
    holdout_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("0"), validators=PERCENT,
        help_text="Share of the layer's units kept out of all of its experiments (long-term holdout).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key

    def save(self, *args, **kwargs) -> None:
        if not self.salt:
            self.salt = self.key
        super().save(*args, **kwargs)


class Metric(models.Model):
    """A reusable definition of how outcomes become a per-unit number."""

    class Kind(models.TextChoices):
        CONVERSION = "conversion", "Conversion (did the unit do it at least once)"
        COUNT = "count", "Count of events per unit"
        SUM = "sum", "Sum of the event value per unit (e.g. revenue)"
        RATIO = "ratio", "Ratio of two per-unit sums (e.g. revenue per order)"
        QUANTILE = "quantile", "Quantile of the per-unit value (e.g. p90 load time)"

    class Direction(models.TextChoices):
        INCREASE = "increase", "Higher is better"
        DECREASE = "decrease", "Lower is better"

    class Aggregation(models.TextChoices):
        SUM = "sum", "Sum of values"
        COUNT = "count", "Count of events"

    key = models.CharField(max_length=64, unique=True, validators=[KEY_VALIDATOR])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    event = models.CharField(
        max_length=128, validators=[EVENT_NAME_VALIDATOR],
        help_text="Event name counted (the numerator's event for ratio metrics).",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CONVERSION)
    numerator_aggregation = models.CharField(
        max_length=8, choices=Aggregation.choices, default=Aggregation.SUM,
        help_text="Ratio metrics: how the numerator event is aggregated per unit.",
    )
    denominator_event = models.CharField(
        max_length=128, blank=True, validators=[EVENT_NAME_VALIDATOR],
        help_text="Ratio metrics only: the denominator's event (e.g. 'purchase' for revenue per order).",
    )
    denominator_aggregation = models.CharField(
        max_length=8, choices=Aggregation.choices, default=Aggregation.COUNT,
        help_text="Ratio metrics: how the denominator event is aggregated per unit.",
    )
    direction = models.CharField(
        max_length=8, choices=Direction.choices, default=Direction.INCREASE
    )
    cap = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="Winsorization: each unit's value is capped at this before summing (blank: no cap).",
    )
    conversion_window_hours = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Count only events within this many hours after the unit's first exposure (blank: no limit).",
    )
    quantile = models.DecimalField(
        max_digits=5, decimal_places=4, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0.0001")), MaxValueValidator(Decimal("0.9999"))],
        help_text="Quantile metrics only: which quantile of the per-unit value, e.g. 0.5 (median), "
                  "0.9 (p90), 0.99 (p99). The per-unit value is the numerator aggregation of the event.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class Experiment(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        ARCHIVED = "archived", "Archived"

    class Correction(models.TextChoices):
        HOLM = "holm", "Holm (family-wise error)"
        BH = "bh", "Benjamini-Hochberg (false discovery rate)"

    key = models.CharField(
        max_length=64, unique=True, validators=[KEY_VALIDATOR],
        help_text="Stable identifier used by client applications; locked once started.",
    )
    name = models.CharField(max_length=200)
    hypothesis = models.TextField(blank=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="experiments",
    )
    team = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Optional: with EXPERIMENT_EDIT_SCOPE=team only the owner and this group's members may edit.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    traffic_allocation = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("100"), validators=PERCENT,
        help_text="Percent of eligible units enrolled. While running it may only grow.",
    )
    salt = models.CharField(
        max_length=128, blank=True,
        help_text="Hashing salt; defaults to the key; locked once started.",
    )
    layer = models.ForeignKey(
        Layer, null=True, blank=True, on_delete=models.PROTECT, related_name="experiments"
    )
    layer_share = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT,
        help_text="Percent of the layer reserved for this experiment (layered experiments only).",
    )
    layer_bucket_start = models.PositiveIntegerField(null=True, blank=True, editable=False)
    layer_bucket_end = models.PositiveIntegerField(null=True, blank=True, editable=False)

    significance_level = models.FloatField(
        default=0.05, validators=[MinValueValidator(0.0001), MaxValueValidator(0.5)],
        help_text="Alpha of the two-sided tests (0.05 means 95 % intervals).",
    )
    correction = models.CharField(
        max_length=8, choices=Correction.choices, default=Correction.HOLM,
        help_text="Multiple-comparison correction across metrics and variants.",
    )
    sequential_testing = models.BooleanField(
        default=False,
        help_text="Always-valid p-values and intervals, safe to look at every day.",
    )
    cuped = models.BooleanField(
        default=True, help_text="Variance reduction with pre-exposure data (CUPED)."
    )
    planned_sample_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Total units planned across all variants."
    )
    planned_duration_days = models.PositiveIntegerField(null=True, blank=True)
    segment_attributes = models.JSONField(
        default=list, blank=True,
        help_text='Unit attributes the report breaks results down by, e.g. ["country", "platform"]; '
                  "blank: the default list plus the targeting attributes (frozen at the start).",
    )
    current_phase = models.PositiveSmallIntegerField(
        default=1, editable=False,
        help_text="Number of the phase now running (see Phase); exposures record it.",
    )
    shipped_variant = models.ForeignKey(
        "Variant", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Once completed: the variant every unit now gets.",
    )
    history = HistoricalRecords(excluded_fields=["updated_at"], get_user=history_user)

    class Meta:
        ordering = ["-created_at", "key"]
        permissions = EXPERIMENT_PERMISSIONS

    def __str__(self) -> str:
        return self.key

    def save(self, *args, **kwargs) -> None:
        if not self.salt:
            self.salt = self.key
        super().save(*args, **kwargs)

    @property
    def is_locked(self) -> bool:
        """Running or paused experiments keep key, salt, variants and weights fixed."""
        return self.status in (self.Status.RUNNING, self.Status.PAUSED)

    @property
    def variants_frozen(self) -> bool:
        """Once started, variants are fixed: exposures, overrides and reports refer to them."""
        return self.status != self.Status.DRAFT

    @property
    def control(self) -> Variant | None:
        return next((v for v in self.variants.all() if v.is_control), None)

class Variant(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    key = models.CharField(max_length=64, validators=[KEY_VALIDATOR])
    name = models.CharField(max_length=200, blank=True)
    weight = models.DecimalField(
        max_digits=5, decimal_places=2, validators=PERCENT,
        help_text="Percent of the experiment's units; the weights of an experiment sum to 100.",
    )
    is_control = models.BooleanField(default=False)
    payload = models.JSONField(
        default=dict, blank=True,
        help_text="JSON the client application receives, e.g. {\"color\": \"green\"}.",
    )
    position = models.PositiveIntegerField(default=0)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="unique_variant_key"),
        ]

    def __str__(self) -> str:
        return self.key


class ExperimentMetric(models.Model):
    class Role(models.TextChoices):
        PRIMARY = "primary", "Primary (decides the experiment)"
        SECONDARY = "secondary", "Secondary (explains it)"
        GUARDRAIL = "guardrail", "Guardrail (must not get worse)"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="experiment_metrics")
    metric = models.ForeignKey(Metric, on_delete=models.PROTECT, related_name="experiment_metrics")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.PRIMARY)
    position = models.PositiveIntegerField(default=0)
    non_inferiority_margin = models.FloatField(
        default=0.02,
        validators=[MinValueValidator(0.0001), MaxValueValidator(1.0)],
        help_text=(
            "Guardrails: the relative harm tolerated (0.02 = 2 %). The guardrail holds when the "
            "data show, with 1 - alpha confidence, no harm beyond it."
        ),
    )
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "metric"], name="unique_experiment_metric"),
        ]

    def __str__(self) -> str:
        return f"{self.metric.key} ({self.role})"


class TargetingRule(models.Model):
    """One condition on a unit attribute; all of an experiment's rules must hold. Data, not code."""

    class Operator(models.TextChoices):
        EQUALS = "equals", "equals"
        NOT_EQUALS = "not_equals", "does not equal"
        IN = "in", "is one of"
        NOT_IN = "not_in", "is none of"
        GT = "gt", "greater than"
        GTE = "gte", "greater than or equal"
        LT = "lt", "less than"
        LTE = "lte", "less than or equal"
        CONTAINS = "contains", "contains"
        EXISTS = "exists", "is present"
        NOT_EXISTS = "not_exists", "is absent"
        SEMVER_EQ = "semver_eq", "version equals (semver)"
        SEMVER_GT = "semver_gt", "version greater than (semver)"
        SEMVER_GTE = "semver_gte", "version at least (semver)"
        SEMVER_LT = "semver_lt", "version less than (semver)"
        SEMVER_LTE = "semver_lte", "version at most (semver)"
        BEFORE = "before", "before (ISO 8601 date or time)"
        AFTER = "after", "after (ISO 8601 date or time)"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="targeting_rules")
    attribute = models.CharField(
        max_length=64,
        validators=[RegexValidator(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$", "Attribute names are 1-64 letters, digits, '_', '.', '-'.")],
    )
    operator = models.CharField(max_length=16, choices=Operator.choices)
    values = models.JSONField(
        default=list, blank=True,
        help_text='Comma-separated (CN, US) or a JSON list (["CN", "US"], [18]); one value for single-value '
                  "operators, none for exists.",
    )
    position = models.PositiveIntegerField(default=0)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.attribute} {self.operator} {self.values}"


class Override(models.Model):
    """A forced variant for one unit, for QA; never counted in analysis."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="overrides")
    unit_id = models.CharField(max_length=256)
    variant = models.ForeignKey(Variant, on_delete=models.PROTECT, related_name="overrides")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["experiment", "unit_id"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "unit_id"], name="unique_override_unit"),
        ]

    def __str__(self) -> str:
        return f"{self.unit_id} -> {self.variant.key}"


class ApprovalRequest(models.Model):
    """Four eyes: a start, a completion or a new phase asked by one person and decided by another.

    The request records a fingerprint of the definition; approving a request whose experiment
    changed since is refused (see ``experiments.approvals``).
    """

    class Action(models.TextChoices):
        START = "start", "Start"
        COMPLETE = "complete", "Complete"
        NEW_PHASE = "new_phase", "New phase"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT, related_name="approval_requests")
    action = models.CharField(max_length=16, choices=Action.choices)
    shipped_variant = models.CharField(
        max_length=64, blank=True, help_text="Completion only: the key of the variant to ship (blank: none).",
    )
    phase_request = models.JSONField(
        default=dict, blank=True,
        help_text="New phase only: the changes, rerandomize and reason to apply once approved.",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
    )
    requested_by_key = models.CharField(max_length=100, blank=True, help_text="The API key that asked, if any.")
    requested_at = models.DateTimeField(auto_now_add=True)
    fingerprint = models.CharField(max_length=64, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
    )
    decided_by_key = models.CharField(max_length=100, blank=True, help_text="The API key that decided, if any.")
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "action"], condition=models.Q(status="pending"),
                name="one_pending_approval_per_action",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.experiment.key} ({self.status})"

    @property
    def requester(self) -> str:
        return self.requested_by.get_username() if self.requested_by_id else (self.requested_by_key or "?")

    @property
    def decider(self) -> str:
        return self.decided_by.get_username() if self.decided_by_id else (self.decided_by_key or "")


class Phase(models.Model):
    """A period of an experiment with one frozen analysis plan (GrowthBook's phases).

    Phase 1 begins when the experiment starts; ``experiments.phases.start_new_phase`` ends the
    current phase and begins the next with a changed plan. A phase's analysis uses only the
    exposures recorded in it and the events from its start to its end.
    """

    experiment = models.ForeignKey(Experiment, on_delete=models.PROTECT, related_name="phases")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    salt = models.CharField(max_length=128, help_text="Hashing salt used during this phase.")
    plan = models.JSONField(default=dict, help_text="Frozen copy of the analysis plan of this phase.")
    reason = models.TextField(blank=True)
    rerandomized = models.BooleanField(
        default=False, help_text="Units were reshuffled with a new salt when this phase began."
    )
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["experiment", "number"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "number"], name="unique_phase_number"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment_id} phase {self.number}"


from .models_flags import (  # noqa: E402,F401  (flags and audiences: a module of their own)
    Audience,
    ExperimentAudience,
    ExperimentEnvironment,
    Flag,
    FlagEnvironment,
    FlagRule,
    FlagRuleAudience,
)
