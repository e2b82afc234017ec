"""Validation of the flags, audiences and environments API. Cross-row rules live in the services
(``experiments.flags``, ``experiments.audiences``, ``experiments.environments``)."""
from __future__ import annotations

from rest_framework import serializers

from access.fields import SafeJSONField
from access.models import Environment

from .models_flags import Audience, Flag
from .serializers import KEY_PATTERN

KEY_FIELD = {"max_length": 64, "error_messages": {
    "invalid": "Use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit."}}


class RuleListField(serializers.ListField):
    """A flag's rules in one environment (each an object; see the flags docs for the kinds)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(child=SafeJSONField(), max_length=100, **kwargs)


class FlagEnvironmentSerializer(serializers.Serializer):
    """PUT /flags/<key>/environments/<environment>: the switch and/or the whole rule list."""

    enabled = serializers.BooleanField(required=False, help_text="Off: every unit gets the default.")
    rules = RuleListField(
        required=False,
        help_text="The environment's whole rule list, first match wins. Rules carrying the id of an existing "
                  "rule update it (its id and salt stay); others are new; rules left out are deleted.",
    )

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError({"rules": ["Give enabled and/or rules."]})
        return attrs

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({f: ["Unknown field; give enabled and/or rules."] for f in unknown[:5]})
        return super().to_internal_value(data)


class FlagSerializer(serializers.Serializer):
    """A flag: create (POST), change (PATCH: name, description, type, default, environments)."""

    key = serializers.RegexField(KEY_PATTERN, **KEY_FIELD)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    type = serializers.ChoiceField(choices=Flag.ValueType.choices, source="value_type", default="boolean")
    environments = serializers.DictField(
        child=FlagEnvironmentSerializer(), required=False,
        help_text='Per environment: {"production": {"enabled": true, "rules": [...]}}.',
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_fields(self):
        fields = super().get_fields()
        # "default" would shadow Field.default as a class attribute: declared here instead.
        fields["default"] = SafeJSONField(
            source="default_value", required=False, allow_null=True,
            help_text="Served when the flag is off or no rule matches; of the flag's type (boolean: false if omitted).",
        )
        return fields

    def validate_key(self, value: str) -> str:
        if value == "evaluate":
            raise serializers.ValidationError("'evaluate' is reserved (POST /api/v1/flags/evaluate).")
        return value


class FlagUpdateSerializer(FlagSerializer):
    key = serializers.RegexField(KEY_PATTERN, required=False, **KEY_FIELD)
    name = serializers.CharField(max_length=200, required=False)
    type = serializers.ChoiceField(choices=Flag.ValueType.choices, source="value_type", required=False)


class FlagOutputSerializer(serializers.Serializer):
    """A flag as the API shows it (the rules in the configuration document's shape)."""

    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    type = serializers.CharField()
    environments = serializers.DictField(child=serializers.DictField())
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_fields(self):
        fields = super().get_fields()
        fields["default"] = serializers.JSONField(allow_null=True)
        return fields


class ConditionSerializer(serializers.Serializer):
    attribute = serializers.CharField(max_length=64)
    operator = serializers.CharField(max_length=16)
    values = serializers.ListField(child=SafeJSONField(), required=False, max_length=1000)


class AudienceSerializer(serializers.ModelSerializer):
    key = serializers.RegexField(KEY_PATTERN, **KEY_FIELD)
    conditions = serializers.ListField(
        child=SafeJSONField(), required=False, max_length=50,
        help_text='Targeting conditions, e.g. [{"attribute": "country", "operator": "in", "values": ["DE", "FR"]}] '
                  "(the operators of experiment targeting).",
    )
    used_by = serializers.SerializerMethodField(help_text="Experiments and flags that use the audience.")

    class Meta:
        model = Audience
        fields = ["key", "name", "description", "match", "conditions", "used_by", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def get_used_by(self, obj: Audience) -> dict:
        from .audiences import usage

        return usage(obj)


class AudienceUpdateSerializer(AudienceSerializer):
    key = serializers.RegexField(KEY_PATTERN, required=False, **KEY_FIELD)

    class Meta(AudienceSerializer.Meta):
        extra_kwargs = {"name": {"required": False}}


class EnvironmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Environment
        fields = ["key", "name", "description", "created_at"]
        read_only_fields = ["created_at"]


class ExperimentAudiencesSerializer(serializers.Serializer):
    audiences = serializers.ListField(child=serializers.CharField(max_length=64), max_length=20)


class ExperimentEnvironmentSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
