"""Request validation and the documented shapes of the assignment API."""
from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from access import jsonsafety
from experiments.models import Audience, Experiment, TargetingRule

from .evaluator import REASONS

#: Every reason an answer can carry: the evaluator's, plus an experiment the server doesn't know.
ANSWER_REASONS = (*REASONS, "unknown_experiment")

MAX_UNIT_ID = 256
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_NAME = 128  # only to shorten names quoted in error messages
MAX_ATTRIBUTE_STRING = 1024
MAX_EXPERIMENTS = 200
MAX_KEY = 64
NO_NUL = "^[^\\x00]*$"  # JSON Schema pattern: no NUL characters (PostgreSQL cannot store them)


_MISSING = object()


def _text_error(value: str) -> str | None:
    if "\x00" in value:
        return "Null characters are not allowed."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Must be valid Unicode (no lone surrogates)."
    return None


def _string_error(value: Any, max_length: int) -> str | None:
    """DRF-worded errors for a required, non-blank, untrimmed string field."""
    if value is _MISSING:
        return "This field is required."
    if value is None:
        return "This field may not be null."
    if not isinstance(value, str):
        return "Not a valid string."
    if value == "":
        return "This field may not be blank."
    if len(value) > max_length:
        return f"Ensure this field has no more than {max_length} characters."
    return _text_error(value)


def validate_attributes(data: Any) -> dict:
    """A flat JSON object whose values are strings, finite numbers, booleans or null.

    Names that cannot be stored (NUL characters, lone surrogates) are dropped: no targeting
    rule can name them, so they could never change an answer.
    """
    if not isinstance(data, dict):
        raise serializers.ValidationError("Expected a flat JSON object of scalars.")
    if len(data) > MAX_ATTRIBUTES:
        raise serializers.ValidationError(f"At most {MAX_ATTRIBUTES} attributes.")
    errors: dict[str, list[str]] = {}
    dropped = []
    for name, value in data.items():
        if _text_error(name) is not None:
            dropped.append(name)
            continue
        if isinstance(value, str):
            problem = _text_error(value)
            if problem is None and len(value) > MAX_ATTRIBUTE_STRING:
                problem = f"String values are at most {MAX_ATTRIBUTE_STRING} characters."
        elif value is None or isinstance(value, bool):
            problem = None
        elif isinstance(value, (int, float)):
            # 1e400 parses as infinity: refused here, where the attribute can be named.
            problem = None if jsonsafety.finite_number(value) else jsonsafety.NOT_FINITE
        else:
            problem = "Values must be a string, number, boolean or null (no objects or lists)."
        if problem is not None:
            errors[name[:MAX_ATTRIBUTE_NAME]] = [problem]
    if errors:
        raise serializers.ValidationError(errors)
    if dropped:
        data = {k: v for k, v in data.items() if k not in dropped}
    return data


def parse_assignment_request(data: Any) -> tuple[str, dict, list[str] | None]:
    """Validate a request body as ``AssignmentRequestSerializer`` documents it, field by field.

    The hot path uses this instead of instantiating the serializer (whose per-instance field
    deep copies would cost more than the assignment itself); tests check they agree.
    """
    if not isinstance(data, dict):
        raise serializers.ValidationError(
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]}
        )
    errors: dict[str, Any] = {}
    unit_id = data.get("unit_id", _MISSING)
    problem = _string_error(unit_id, MAX_UNIT_ID)
    if problem is not None:
        errors["unit_id"] = [problem]
    attributes = data.get("attributes", _MISSING)
    if attributes is _MISSING:
        attributes = {}
    else:
        try:
            attributes = validate_attributes(attributes)
        except serializers.ValidationError as exc:
            errors["attributes"] = exc.detail
    experiments = data.get("experiments", _MISSING)
    if experiments is _MISSING:
        experiments = None
    elif not isinstance(experiments, list):
        errors["experiments"] = [f'Expected a list of items but got type "{type(experiments).__name__}".']
    elif len(experiments) > MAX_EXPERIMENTS:
        errors["experiments"] = [f"Ensure this field has no more than {MAX_EXPERIMENTS} elements."]
    else:
        item_errors = {
            i: [problem]
            for i, key in enumerate(experiments)
            if (problem := _string_error(key, MAX_KEY)) is not None
        }
        if item_errors:
            errors["experiments"] = item_errors
    if errors:
        raise serializers.ValidationError(errors)
    return unit_id, attributes, experiments


class StrictCharField(serializers.CharField):
    """A string, never coerced from a number, kept byte for byte (no trimming): it is hashed."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators.append(RegexValidator(NO_NUL, "Null characters are not allowed."))

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        problem = _text_error(data)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return super().to_internal_value(data)


@extend_schema_field({
    "type": "object",
    "maxProperties": MAX_ATTRIBUTES,
    "additionalProperties": {
        "nullable": True,
        "oneOf": [
            {"type": "string", "maxLength": MAX_ATTRIBUTE_STRING, "pattern": NO_NUL},
            {"type": "number"},
            {"type": "boolean"},
        ],
    },
})
class AttributesField(serializers.DictField):
    """A flat JSON object whose values are strings, numbers, booleans or null."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.JSONField(), **kwargs)

    def to_internal_value(self, data: Any) -> dict:
        return dict(validate_attributes(data))


@extend_schema_serializer(component_name="Assign")  # shown as AssignRequest
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
    reason = serializers.ChoiceField(
        choices=ANSWER_REASONS, help_text="Stable machine-readable code."
    )
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

class ConfigHashSerializer(serializers.Serializer):
    algorithm = serializers.CharField()
    buckets = serializers.IntegerField()


class ConfigLayerSerializer(serializers.Serializer):
    salt = serializers.CharField()
    holdout_percent = serializers.FloatField()


class ConfigVariantSerializer(serializers.Serializer):
    key = serializers.CharField()
    weight = serializers.FloatField()
    is_control = serializers.BooleanField()
    payload = serializers.JSONField()


class ConfigRuleSerializer(serializers.Serializer):
    attribute = serializers.CharField()
    operator = serializers.ChoiceField(choices=TargetingRule.Operator.choices)
    values = serializers.ListField(child=serializers.JSONField())


class ConfigExperimentSerializer(serializers.Serializer):
    key = serializers.CharField()
    status = serializers.ChoiceField(choices=Experiment.Status.choices)
    phase = serializers.IntegerField(help_text="The current phase (docs/assignment.md, section 10a).")
    salt = serializers.CharField()
    traffic_allocation = serializers.FloatField()
    layer = serializers.CharField(allow_null=True)
    layer_range = serializers.ListField(
        child=serializers.IntegerField(), min_length=2, max_length=2, allow_null=True
    )
    variants = ConfigVariantSerializer(many=True)
    targeting = ConfigRuleSerializer(many=True)
    overrides = serializers.DictField(child=serializers.CharField())
    shipped_variant = serializers.CharField(allow_null=True)
    override_salt = serializers.CharField(required=False, help_text="Client document only.")
    hashed_overrides = serializers.DictField(
        child=serializers.CharField(), required=False,
        help_text="Client document only: SHA-256 of override:<override_salt>:<unit_id> -> variant.",
    )
    audiences = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="Saved audiences (keys of the document's audiences) the unit must belong to, every one.",
    )
    enabled = serializers.BooleanField(
        required=False, help_text="Whether the experiment is on in this document's environment.",
    )


class ConfigAudienceSerializer(serializers.Serializer):
    match = serializers.ChoiceField(choices=Audience.Match.choices)
    conditions = ConfigRuleSerializer(many=True)


class ConfigDocumentSerializer(serializers.Serializer):
    schema_version = serializers.IntegerField()
    version = serializers.CharField(help_text="Content hash; also the ETag.")
    generated_at = serializers.DateTimeField()
    hash = ConfigHashSerializer()
    layers = serializers.DictField(child=ConfigLayerSerializer())
    experiments = ConfigExperimentSerializer(many=True)
    scope = serializers.CharField(required=False, help_text="'client' in the client-safe document.")
    environment = serializers.CharField(required=False, help_text="The environment this document is for.")
    audiences = serializers.DictField(child=ConfigAudienceSerializer(), required=False,
                                      help_text="Saved audiences by key (named targeting conditions).")
    flags = serializers.ListField(
        child=serializers.DictField(), required=False,
        help_text="Feature flags of this environment, sorted by key: key, type, default, enabled, unit_salt, rules.",
    )


class SingleAssignmentResponseSerializer(AssignmentSerializer):
    unit_id = serializers.CharField()
    degraded = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="Present when something degraded, e.g. 'exposures-local-buffer'.",
    )
