"""Request validation and the documented shapes of ``POST /api/v1/flags/evaluate``.

``unit_id`` and ``attributes`` are validated exactly as for assignments (the same functions);
``flags`` is an optional list of keys. Unknown keys are not errors: they are answered with
reason ``unknown_flag``.
"""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from .flags import FLAG_REASONS
from .serializers import (
    MAX_UNIT_ID,
    AttributesField,
    StrictCharField,
    _string_error,
    parse_assignment_request,
)

MAX_FLAGS = 200
MAX_FLAG_KEY = 128


def parse_flag_request(data: Any) -> tuple[str, dict, list[str] | None]:
    """``(unit_id, attributes, flag keys or None)``, or a ValidationError naming each field.

    The hot path's counterpart of ``FlagEvaluateRequestSerializer`` (tests check they agree)."""
    if not isinstance(data, dict):
        raise serializers.ValidationError(
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]}
        )
    errors: dict[str, Any] = {}
    unit_id, attributes = "", {}
    try:
        unit_id, attributes, _ = parse_assignment_request(
            {k: data[k] for k in ("unit_id", "attributes") if k in data}
        )
    except serializers.ValidationError as exc:
        errors.update(exc.detail)
    keys = data.get("flags")
    if "flags" in data:
        if not isinstance(keys, list):
            errors["flags"] = [f'Expected a list of items but got type "{type(keys).__name__}".']
        elif len(keys) > MAX_FLAGS:
            errors["flags"] = [f"Ensure this field has no more than {MAX_FLAGS} elements."]
        else:
            item_errors = {
                i: [problem] for i, key in enumerate(keys)
                if (problem := _string_error(key, MAX_FLAG_KEY)) is not None
            }
            if item_errors:
                errors["flags"] = item_errors
    if errors:
        raise serializers.ValidationError(errors)
    return unit_id, attributes, keys


@extend_schema_serializer(component_name="FlagEvaluate")  # shown as FlagEvaluateRequest
class FlagEvaluateRequestSerializer(serializers.Serializer):
    unit_id = StrictCharField(
        max_length=MAX_UNIT_ID, help_text="The unit to evaluate flags for; hashed exactly as given.",
    )
    attributes = AttributesField(
        required=False, default=dict, help_text="The unit's attributes, for audiences and targeting.",
    )
    flags = serializers.ListField(
        child=StrictCharField(max_length=MAX_FLAG_KEY), required=False, max_length=MAX_FLAGS,
        help_text="Flag keys to evaluate; omitted means every flag. Unknown keys answer `unknown_flag`.",
    )


class FlagResultSerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.JSONField(
        allow_null=True, help_text="The flag's value (its type's JSON value); null for an unknown flag.",
    )
    reason = serializers.ChoiceField(choices=FLAG_REASONS, help_text="Stable machine-readable code.")
    rule_id = serializers.CharField(allow_null=True, help_text="The rule that decided, if any.")
    experiment = serializers.CharField(allow_null=True, help_text="Set when an experiment rule decided.")
    variant = serializers.CharField(allow_null=True, help_text="Set when an experiment rule decided.")


class FlagEvaluateResponseSerializer(serializers.Serializer):
    unit_id = serializers.CharField()
    environment = serializers.CharField(help_text="The environment whose rules were applied.")
    config_version = serializers.CharField(help_text="The configuration the answer came from.")
    flags = serializers.DictField(child=FlagResultSerializer(), help_text="Results by flag key.")
    degraded = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="Present when something degraded, e.g. 'exposures-local-buffer'.",
    )
