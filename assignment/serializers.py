"""Request validation and the documented shapes of the assignment API."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .evaluator import REASONS
from .targeting import OPERATORS

MAX_UNIT_ID = 256
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_NAME = 128
MAX_ATTRIBUTE_STRING = 1024
MAX_EXPERIMENTS = 200
MAX_KEY = 64


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise serializers.ValidationError("Null characters are not allowed.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError("Must be valid Unicode (no lone surrogates).") from None


class StrictCharField(serializers.CharField):
    """A string, never coerced from a number, kept byte for byte (no trimming): it is hashed."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        _check_text(data)
        return super().to_internal_value(data)


@extend_schema_field({
    "type": "object",
    "maxProperties": MAX_ATTRIBUTES,
    "additionalProperties": {
        "nullable": True,
        "oneOf": [
            {"type": "string", "maxLength": MAX_ATTRIBUTE_STRING},
            {"type": "number"},
            {"type": "boolean"},
        ],
    },
})
class AttributesField(serializers.DictField):
    """A flat JSON object whose values are strings, numbers, booleans or null."""

    default_error_messages = {"not_a_dict": "Expected a flat JSON object of scalars."}

    def __init__(self, **kwargs):
        super().__init__(child=serializers.JSONField(), **kwargs)

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, dict):
            self.fail("not_a_dict")
        if len(data) > MAX_ATTRIBUTES:
            raise serializers.ValidationError(f"At most {MAX_ATTRIBUTES} attributes.")
        errors: dict[str, list[str]] = {}
        for name, value in data.items():
            try:
                if not name or len(name) > MAX_ATTRIBUTE_NAME:
                    raise serializers.ValidationError(
                        f"Attribute names are 1-{MAX_ATTRIBUTE_NAME} characters."
                    )
                _check_text(name)
                if isinstance(value, str):
                    if len(value) > MAX_ATTRIBUTE_STRING:
                        raise serializers.ValidationError(
                            f"String values are at most {MAX_ATTRIBUTE_STRING} characters."
                        )
                    _check_text(value)
                elif value is not None and not isinstance(value, (bool, int, float)):
                    raise serializers.ValidationError(
                        "Values must be a string, number, boolean or null (no objects or lists)."
                    )
            except serializers.ValidationError as exc:
                errors[str(name)[:MAX_ATTRIBUTE_NAME] or "<empty>"] = exc.detail
        if errors:
            raise serializers.ValidationError(errors)
        return dict(data)


class AssignmentRequestSerializer(serializers.Serializer):
    unit_id = StrictCharField(
        max_length=MAX_UNIT_ID,
        help_text="The unit (user, device, account...) to assign; hashed exactly as given.",
    )
    attributes = AttributesField(
        required=False, default=dict,
        help_text="The unit's attributes for targeting, e.g. {\"country\": \"CN\"}.",
    )
    experiments = serializers.ListField(
        child=StrictCharField(max_length=MAX_KEY), required=False, max_length=MAX_EXPERIMENTS,
        help_text="Experiment keys to answer for; omitted means every running experiment.",
    )


class AssignmentSerializer(serializers.Serializer):
    experiment = serializers.CharField()
    variant = serializers.CharField(
        allow_null=True,
        help_text="The variant whose payload is served (the control when not enrolled).",
    )
    in_experiment = serializers.BooleanField(
        help_text="True only when the unit is enrolled in a running experiment."
    )
    reason = serializers.ChoiceField(choices=REASONS, help_text="Stable machine-readable code.")
    detail = serializers.CharField(help_text="Human explanation; its wording may change.")
    payload = serializers.JSONField(help_text="The variant's JSON payload.")


class AssignmentResponseSerializer(serializers.Serializer):
    unit_id = serializers.CharField()
    assignments = AssignmentSerializer(many=True)
    degraded = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="Present when something degraded, e.g. 'exposures-local-buffer'.",
    )


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


# --- the configuration document (documentation only; the document is built as a dict) -----------

class _HashSerializer(serializers.Serializer):
    algorithm = serializers.CharField()
    buckets = serializers.IntegerField()


class _LayerSerializer(serializers.Serializer):
    salt = serializers.CharField()
    holdout_percent = serializers.FloatField()


class _VariantSerializer(serializers.Serializer):
    key = serializers.CharField()
    weight = serializers.FloatField()
    is_control = serializers.BooleanField()
    payload = serializers.JSONField()


class _RuleSerializer(serializers.Serializer):
    attribute = serializers.CharField()
    operator = serializers.ChoiceField(choices=OPERATORS)
    values = serializers.ListField(child=serializers.JSONField())


class _ExperimentSerializer(serializers.Serializer):
    key = serializers.CharField()
    status = serializers.ChoiceField(choices=["draft", "running", "paused", "completed", "archived"])
    salt = serializers.CharField()
    traffic_allocation = serializers.FloatField()
    layer = serializers.CharField(allow_null=True)
    layer_range = serializers.ListField(
        child=serializers.IntegerField(), min_length=2, max_length=2, allow_null=True
    )
    variants = _VariantSerializer(many=True)
    targeting = _RuleSerializer(many=True)
    overrides = serializers.DictField(child=serializers.CharField())
    shipped_variant = serializers.CharField(allow_null=True)


class ConfigDocumentSerializer(serializers.Serializer):
    schema_version = serializers.IntegerField()
    version = serializers.CharField(help_text="Content hash; also the ETag.")
    generated_at = serializers.DateTimeField()
    hash = _HashSerializer()
    layers = serializers.DictField(child=_LayerSerializer())
    experiments = _ExperimentSerializer(many=True)


class SingleAssignmentResponseSerializer(AssignmentSerializer):
    unit_id = serializers.CharField()
    degraded = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="Present when something degraded, e.g. 'exposures-local-buffer'.",
    )
