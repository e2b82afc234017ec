"""Admin forms for flags and audiences: values typed as people write them, not raw JSON.

A value box reads by the flag's type: ``true``/``false`` for booleans, the text itself for
strings, ``12.5`` for numbers, JSON for JSON flags. Unit lists and per-variant values are one
``key = value`` per line. The parsed rules go through ``experiments.flags`` validation, so the
admin refuses exactly what the API refuses, with the same messages.
"""
from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from access import jsonsafety

from . import audiences as audience_services
from . import flags
from .forms import ValuesField
from .models_flags import Audience, Flag, FlagRule

ValueType = Flag.ValueType


def parse_typed(value_type: str, text: str) -> Any:
    """A value typed in a box, read by the flag's type; ValueError with a readable message."""
    if value_type == ValueType.BOOLEAN:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError("Type true or false.")
    if value_type == ValueType.STRING:
        return text
    try:
        value = jsonsafety.loads(text.strip())
    except ValueError as exc:
        raise ValueError(f"Type {'a number' if value_type == ValueType.NUMBER else 'JSON'} ({exc}).") from None
    if value_type == ValueType.NUMBER and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError("Type a number, e.g. 12.5.")
    return value


def show_typed(value_type: str, value: Any) -> str:
    if value_type == ValueType.BOOLEAN and isinstance(value, bool):
        return "true" if value else "false"
    if value_type == ValueType.STRING and isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _pairs(text: str) -> list[tuple[str, str | None]]:
    """``key = value`` lines (``key`` alone: no value); blank lines skipped."""
    pairs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        pairs.append((key.strip(), value.strip() if sep else None))
    return pairs


class FlagForm(forms.ModelForm):
    default_text = forms.CharField(
        label="Default value", required=False, widget=forms.TextInput(attrs={"size": 40}),
        help_text="Served when the flag is off or no rule matches: true/false, text, a number or JSON, by type.",
    )

    class Meta:
        model = Flag
        fields = ["key", "name", "description", "value_type"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and "key" in self.fields:  # (a view-only user's form has no fields)
            self.fields["default_text"].initial = show_typed(self.instance.value_type, self.instance.default_value)
            self.fields["key"].disabled = True
            self.fields["key"].help_text = "Fixed once created: applications and rollout salts refer to it."

    def clean(self):
        cleaned = super().clean()
        value_type = cleaned.get("value_type")
        if not value_type:
            return cleaned
        text = cleaned.get("default_text") or ""
        try:
            default = parse_typed(value_type, text) if text.strip() or value_type == ValueType.STRING \
                else flags.DEFAULTS[value_type]
        except ValueError as e:
            self.add_error("default_text", str(e))
            return cleaned
        problem = flags.value_problem(value_type, default)
        if problem:
            self.add_error("default_text", f"The value {problem}")
        elif cleaned.get("key") == "evaluate":
            self.add_error("key", "'evaluate' is reserved (POST /api/v1/flags/evaluate).")
        else:
            self.instance.default_value = default
        return cleaned


class FlagRuleForm(forms.ModelForm):
    """One rule; its boxes are read by the flag's type when the whole list is checked."""

    value_text = forms.CharField(
        label="Value", required=False, widget=forms.TextInput(attrs={"size": 16}),
        help_text="force / rollout (and a list of units): the value served.",
    )
    units_text = forms.CharField(
        label="Units", required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 24}),
        help_text="units: one unit id per line (gets the value), or 'unit id = value'.",
    )
    values_text = forms.CharField(
        label="Values per variant", required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 24}),
        help_text="experiment: 'variant = value' per line; blank: each variant payload's member named like the flag.",
    )
    audiences = forms.ModelMultipleChoiceField(
        queryset=Audience.objects.order_by("key"), required=False,
        help_text="force / rollout: the unit must be in every audience selected (none: everyone).",
    )

    class Meta:
        model = FlagRule
        fields = ["position", "kind", "percent", "salt", "experiment"]

    def __init__(self, *args, value_type: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        rule = self.instance
        if rule.pk and "value_text" in self.fields:
            value_type = rule.flag.value_type
            if rule.kind in (FlagRule.Kind.FORCE, FlagRule.Kind.ROLLOUT):
                self.fields["value_text"].initial = show_typed(value_type, rule.value)
            self.fields["units_text"].initial = "\n".join(
                f"{u} = {show_typed(value_type, v)}" for u, v in (rule.units or {}).items())
            self.fields["values_text"].initial = "\n".join(
                f"{k} = {show_typed(value_type, v)}" for k, v in (rule.values or {}).items())
            self.fields["audiences"].initial = [link.audience_id for link in rule.audience_links.all()]
            self.fields["salt"].disabled = True
        self.fields["salt"].help_text = "rollout: fixed once created; blank: the flag key."
        self.fields["salt"].required = False

    def as_rule(self, value_type: str) -> dict[str, Any]:
        """The rule in the API's shape (what ``experiments.flags`` validates); ValueError on a bad box."""
        data = self.cleaned_data
        kind = data.get("kind")
        # Boxes that belong to another kind of rule are refused, not silently dropped.
        belongs = {"percent": (FlagRule.Kind.ROLLOUT,), "audiences": (FlagRule.Kind.FORCE, FlagRule.Kind.ROLLOUT),
                   "units_text": (FlagRule.Kind.UNITS,), "experiment": (FlagRule.Kind.EXPERIMENT,),
                   "values_text": (FlagRule.Kind.EXPERIMENT,),
                   "value_text": (FlagRule.Kind.FORCE, FlagRule.Kind.ROLLOUT, FlagRule.Kind.UNITS)}
        for name, kinds in belongs.items():
            if kind not in kinds and data.get(name) not in (None, "", [], ()) and (
                    name != "audiences" or list(data[name])):
                label = self.fields[name].label or name
                raise ValueError(f"{str(label).lower()} does not apply to a {kind} rule; clear it.")
        rule: dict[str, Any] = {"type": kind}
        if self.instance.pk:
            rule["id"] = self.instance.rule_id
        text = data.get("value_text") or ""
        if kind in (FlagRule.Kind.FORCE, FlagRule.Kind.ROLLOUT):
            rule["value"] = parse_typed(value_type, text)
            rule["audiences"] = [a.key for a in data.get("audiences") or []]
        if kind == FlagRule.Kind.ROLLOUT:
            rule["percent"] = str(data["percent"]) if data.get("percent") is not None else None
            if data.get("salt") and not self.instance.pk:
                rule["salt"] = data["salt"]
        if kind == FlagRule.Kind.UNITS:
            units = {}
            for unit, value in _pairs(data.get("units_text") or ""):
                units[unit] = parse_typed(value_type, value if value is not None else text)
            rule["units"] = units
        if kind == FlagRule.Kind.EXPERIMENT:
            rule["experiment"] = data["experiment"].key if data.get("experiment") else None
            pairs = _pairs(data.get("values_text") or "")
            if pairs:
                rule["values"] = {k: parse_typed(value_type, v or "") for k, v in pairs}
        return rule


class FlagRuleFormSet(forms.BaseInlineFormSet):
    """The rules of one environment, checked together by ``experiments.flags``."""

    environment_key: str = "production"

    def get_queryset(self):
        return super().get_queryset().filter(environment__key=self.environment_key).order_by("position", "id")

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        flag = self.instance
        value_type = flag.value_type
        existing = {f.instance.rule_id: f.instance for f in self.forms if f.instance.pk}
        errors = flags._RuleErrors()
        self.cleaned_rules = []
        live = [f for f in self.forms if f.has_changed() or f.instance.pk]
        live = [f for f in live if not self._should_delete_form(f)]
        live.sort(key=lambda f: f.cleaned_data.get("position") or 0)
        for i, form in enumerate(live):
            try:
                rule = form.as_rule(value_type)
            except ValueError as e:
                errors.add(i, form.cleaned_data.get("kind"), str(e))
                continue
            result = flags._clean_rule(flag, i, rule, existing, errors)
            if result is not None:
                self.cleaned_rules.append((form, *result))
        if errors.messages:
            raise ValidationError(errors.messages)

    def save(self, commit=True):
        """Written through ``experiments.flags`` rules: fields, salt and audiences (ids stay)."""
        from access.services import get_environment

        environment = get_environment(self.environment_key)
        saved = []
        self.deleted_objects = [f.instance for f in self.deleted_forms if f.instance.pk]
        self.new_objects = [f.instance for f, *_ in self.cleaned_rules if not f.instance.pk]
        self.changed_objects = [(f.instance, f.changed_data) for f, *_ in self.cleaned_rules
                                if f.instance.pk and f.has_changed()]
        for form in self.deleted_forms:
            if form.instance.pk:
                form.instance._change_reason = flags._reason(self.actor, f"deleted in {self.environment_key} in the admin")
                form.instance.delete()
        for position, (form, _row, fields, audiences) in enumerate(self.cleaned_rules):
            rule = form.instance
            rule.flag, rule.environment = self.instance, environment
            fields["position"] = position
            for name, value in fields.items():
                setattr(rule, name, value)
            rule._change_reason = flags._reason(self.actor, f"saved in {self.environment_key} in the admin")
            rule.save()
            flags._set_rule_audiences(rule, audiences, self.actor)
            saved.append(rule)
        return saved

    #: Who saves (set by the admin before ``save``), for the history's reason.
    actor: str | None = None


class ConditionsField(forms.CharField):
    """Audience conditions, one per line: ``attribute operator values`` (``country in DE, FR``;
    ``age gte 18``; ``beta exists``), values as in experiment targeting; or a JSON list."""

    widget = forms.Textarea(attrs={"rows": 5, "cols": 60})

    def prepare_value(self, value):
        if isinstance(value, str):
            return value
        lines = []
        for c in value or []:
            values = ValuesField().prepare_value(c.get("values") or [])
            lines.append(f"{c.get('attribute')} {c.get('operator')} {values}".rstrip())
        return "\n".join(lines)

    def to_python(self, value):
        text = (super().to_python(value) or "").strip()
        if text.startswith("["):
            try:
                return jsonsafety.loads(text)
            except ValueError as exc:
                raise ValidationError(f"Not valid JSON: {exc}") from None
        conditions = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.strip().split(None, 2)
            if len(parts) < 2:
                raise ValidationError(f"Line {n}: write 'attribute operator values', e.g. country in DE, FR.")
            values = ValuesField(required=False).to_python(parts[2]) if len(parts) == 3 else []
            conditions.append({"attribute": parts[0], "operator": parts[1], "values": values})
        return conditions


class AudienceForm(forms.ModelForm):
    conditions = ConditionsField(
        required=False,
        help_text="One condition per line: attribute operator values, e.g. 'country in DE, FR' or "
                  "'app_version semver_gte 2.1.0'. Operators: " + ", ".join(
                      sorted(__import__("experiments.models", fromlist=["TargetingRule"]).TargetingRule.Operator.values)),
    )

    class Meta:
        model = Audience
        fields = ["key", "name", "description", "match", "conditions"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and "key" in self.fields:
            self.fields["key"].disabled = True

    def clean(self):
        cleaned = super().clean()
        if "conditions" not in cleaned:
            return cleaned
        try:
            cleaned["conditions"] = audience_services.validate_conditions(cleaned["conditions"])
        except ValidationError as e:
            for message in e.message_dict.get("conditions", e.messages):
                self.add_error("conditions", message)
            return cleaned
        audience = self.instance
        if audience.pk:
            changed = [f for f in ("match", "conditions") if f in cleaned and cleaned[f] != getattr(
                Audience.objects.get(pk=audience.pk), f)]
            if changed:
                frozen = audience_services._frozen_by(audience)  # locked until the admin's save commits
                if frozen:
                    self.add_error(changed[0], (
                        f"Used by started experiment(s) {', '.join(f'{e.key} ({e.status})' for e in frozen[:5])}, "
                        "whose analysis plan is frozen: create a new audience for the change."))
        return cleaned
