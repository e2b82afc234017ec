"""Validation of the definitions API. Cross-row rules are delegated to ``experiments.services``."""
from __future__ import annotations

import re
from decimal import Decimal

from rest_framework import serializers

from access.fields import SafeJSONField

from .models import Experiment, ExperimentMetric, Layer, Metric, Phase, TargetingRule

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class KeyRelatedField(serializers.SlugRelatedField):
    """Refers to a metric or layer by key; malformed keys are refused before any query."""

    def __init__(self, **kwargs) -> None:
        super().__init__(slug_field="key", **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str) or not KEY_PATTERN.match(data):
            self.fail("does_not_exist", slug_name=self.slug_field, value=str(data)[:64])
        return super().to_internal_value(data)


class LayerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Layer
        fields = ["key", "name", "description", "salt", "holdout_percent", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {"salt": {"required": False}}


class MetricSerializer(serializers.ModelSerializer):
    cap = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1e15)

    class Meta:
        model = Metric
        fields = [
            "key", "name", "description", "event", "kind", "numerator_aggregation",
            "denominator_event", "denominator_aggregation", "direction", "cap",
            "conversion_window_hours", "quantile", "created_at",
        ]
        read_only_fields = ["created_at"]
        extra_kwargs = {"conversion_window_hours": {"max_value": 24 * 365 * 5}}


class VariantSerializer(serializers.Serializer):
    key = serializers.RegexField(r"^[a-z0-9][a-z0-9_-]{0,63}$", max_length=64, error_messages={
        "invalid": "Use 1-64 lowercase letters, digits, '-' or '_'."})
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    weight = serializers.DecimalField(max_digits=5, decimal_places=2, min_value=Decimal("0"), max_value=Decimal("100"))
    is_control = serializers.BooleanField(default=False)
    payload = SafeJSONField(required=False, default=dict)

    def validate_payload(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("The payload must be a JSON object.")
        return value


class ExperimentMetricSerializer(serializers.Serializer):
    metric = KeyRelatedField(queryset=Metric.objects.all())
    role = serializers.ChoiceField(choices=ExperimentMetric.Role.choices, default="primary")
    non_inferiority_margin = serializers.FloatField(
        required=False, default=0.02, min_value=0.0001, max_value=1.0,
        help_text="Guardrails: relative harm tolerated (0.02 = 2 %), judged by a one-sided non-inferiority test.",
    )


class TargetingRuleSerializer(serializers.Serializer):
    attribute = serializers.RegexField(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$", max_length=64)
    operator = serializers.ChoiceField(choices=TargetingRule.Operator.choices)
    values = serializers.ListField(child=SafeJSONField(), required=False, default=list, max_length=1000)

    def validate_values(self, values):
        for v in values:
            if v is None or not isinstance(v, (str, int, float, bool)) or (isinstance(v, str) and len(v) > 256):
                raise serializers.ValidationError("Each value must be a string (up to 256 characters), number or boolean.")
        return values

    def validate(self, attrs):
        """The operator's value rules (count, numbers, versions, dates), reported on ``values``."""
        from django.core.exceptions import ValidationError as DjangoValidationError

        from . import services

        try:
            services.validate_targeting([{**attrs, "values": attrs.get("values", [])}])
        except DjangoValidationError as e:
            raise serializers.ValidationError(
                {"values": [m.split(": ", 1)[-1] for m in e.message_dict.get("targeting", e.messages)]}
            ) from None
        return attrs


class ExperimentSerializer(serializers.ModelSerializer):
    key = serializers.RegexField(r"^[a-z0-9][a-z0-9_-]{0,63}$", max_length=64, error_messages={
        "invalid": "Use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit."})
    layer = KeyRelatedField(queryset=Layer.objects.all(), allow_null=True, required=False)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    variants = VariantSerializer(many=True)
    metrics = ExperimentMetricSerializer(many=True, required=False, source="experiment_metrics")
    targeting = TargetingRuleSerializer(many=True, required=False, source="targeting_rules")
    shipped_variant = serializers.SlugRelatedField(slug_field="key", read_only=True, allow_null=True)
    report_url = serializers.SerializerMethodField()
    segment_attributes = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=20,
        help_text="Unit attributes the report breaks results down by (frozen at the start).",
    )

    class Meta:
        model = Experiment
        fields = [
            "key", "name", "hypothesis", "description", "owner", "status", "traffic_allocation",
            "salt", "layer", "layer_share", "significance_level", "correction",
            "sequential_testing", "cuped", "planned_sample_size", "planned_duration_days",
            "variants", "metrics", "targeting", "shipped_variant", "created_at", "updated_at",
            "started_at", "paused_at", "ended_at", "archived_at", "report_url",
            "segment_attributes", "current_phase",
        ]
        read_only_fields = [
            "current_phase",
            "owner", "status", "created_at", "updated_at", "started_at", "paused_at", "ended_at",
            "archived_at", "shipped_variant",
        ]
        extra_kwargs = {"salt": {"required": False}, "planned_sample_size": {"max_value": 2_000_000_000}}

    def get_report_url(self, obj: Experiment) -> str:
        return f"/reports/{obj.key}/"

    def to_service_data(self) -> dict:
        """The validated data in the shape ``experiments.services`` expects."""
        data = dict(self.validated_data)
        if "experiment_metrics" in data:
            data["metrics"] = data.pop("experiment_metrics")
        if "targeting_rules" in data:
            data["targeting"] = data.pop("targeting_rules")
        return data


class ExperimentUpdateSerializer(ExperimentSerializer):
    key = serializers.RegexField(r"^[a-z0-9][a-z0-9_-]{0,63}$", max_length=64, required=False)
    variants = VariantSerializer(many=True, required=False)


class CompleteSerializer(serializers.Serializer):
    shipped_variant = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)


class HistoryChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    old = serializers.CharField(help_text='Display value before the change; "none" when empty.')
    new = serializers.CharField(help_text='Display value after the change; "none" when empty.')


class ExperimentHistoryEntrySerializer(serializers.Serializer):
    """One entry of an experiment's audit trail (``experiments.audit``)."""

    at = serializers.DateTimeField()
    who = serializers.CharField(allow_null=True, help_text="Username, or the API key (api-key:name); null if unknown.")
    object_type = serializers.CharField(help_text="experiment, variant, metric, targeting rule, override, layer, ...")
    object = serializers.CharField(help_text="Which one: a variant key, a metric key, a rule, a unit id, ...")
    action = serializers.CharField(help_text="created, changed or deleted (other sources may add their own).")
    reason = serializers.CharField(allow_blank=True, help_text="The recorded reason, e.g. 'started by api-key:ci'.")
    changes = HistoryChangeSerializer(many=True)


class PhaseChangesSerializer(serializers.ModelSerializer):
    """What a new phase changes in the analysis plan; any other key is refused by name."""

    variants = VariantSerializer(many=True, required=False)
    metrics = ExperimentMetricSerializer(many=True, required=False)
    targeting = TargetingRuleSerializer(many=True, required=False)
    segment_attributes = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=20)

    class Meta:
        model = Experiment
        fields = [
            "targeting", "variants", "metrics", "significance_level", "correction", "sequential_testing",
            "cuped", "planned_sample_size", "planned_duration_days", "segment_attributes",
        ]
        extra_kwargs = {
            "planned_sample_size": {"max_value": 2_000_000_000, "required": False},
            **{f: {"required": False} for f in ("significance_level", "correction", "sequential_testing",
                                                 "cuped", "planned_duration_days")},
        }

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({
                    field: [f"Not part of the analysis plan; a new phase changes only: {', '.join(self.fields)}."]
                    for field in unknown
                })
        return super().to_internal_value(data)


class PhaseCreateSerializer(serializers.Serializer):
    changes = PhaseChangesSerializer(required=False, help_text="The plan fields to change (lists replace the current ones).")
    rerandomize = serializers.BooleanField(
        default=False,
        help_text="Give the experiment a new salt so every unit is hashed afresh (recommended after a "
                  "targeting or weight change: carry-over from the old phase cannot bias the new one).",
    )
    reason = serializers.CharField(max_length=2000, help_text="Why the plan changes (kept with the phase).")
    expected_phase = serializers.IntegerField(
        required=False, min_value=1, max_value=32767,
        help_text="The phase you are replacing; 409 when another phase was started meanwhile.",
    )


class PhaseSerializer(serializers.ModelSerializer):
    experiment = serializers.SlugRelatedField(slug_field="key", read_only=True)

    class Meta:
        model = Phase
        fields = ["experiment", "number", "started_at", "ended_at", "salt", "rerandomized", "reason", "created_by", "plan"]
        read_only_fields = fields
