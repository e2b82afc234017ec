"""Feature flags: every write goes through here (admin, API, demo), with every invariant.

A flag has a typed default and, per environment, an on/off switch and an ordered list of rules
(force, units, rollout, experiment; the first that matches decides). Values always have the
flag's type; a rollout's salt is fixed when the rule is created, so raising its percent only adds
units (sticky ramp-up); an experiment rule's values are keyed by the experiment's variants.
Violations raise ``ValidationError`` naming the field (``rules`` for a rule, with its number).
``rule_as_dict`` and ``flag_entry`` give the configuration document's shape
(docs/flags contract), shared by the API and ``assignment.document``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from access import jsonsafety
from access.models import Environment

from . import audiences as audience_services
from . import environments
from .models import Experiment
from .models_flags import Flag, FlagEnvironment, FlagRule, FlagRuleAudience
from .services import _reason, _save_unique

ValueType = Flag.ValueType
Kind = FlagRule.Kind

MAX_STRING = 4096
MAX_JSON_BYTES = 16 * 1024
MAX_RULES = 100
MAX_UNITS = 1000
MAX_UNIT_ID = 256
#: Integers beyond this lose precision as doubles (JavaScript SDKs, the evaluators).
MAX_SAFE_INTEGER = 2**53
DEFAULTS = {ValueType.BOOLEAN: False, ValueType.STRING: "", ValueType.NUMBER: 0, ValueType.JSON: None}
#: The members each kind of rule takes (anything else is refused, not dropped).
RULE_MEMBERS = {
    Kind.FORCE: {"id", "type", "audiences", "value"},
    Kind.UNITS: {"id", "type", "units", "hashed_units", "value"},
    Kind.ROLLOUT: {"id", "type", "audiences", "value", "percent", "salt"},
    Kind.EXPERIMENT: {"id", "type", "experiment", "values"},
}
FLAG_FIELDS = ("key", "name", "description", "value_type", "default_value")


# --- values ------------------------------------------------------------------------------------

def value_problem(value_type: str, value: Any) -> str | None:
    """Why ``value`` is not a value of a flag of ``value_type`` (None if it is)."""
    if value_type == ValueType.BOOLEAN:
        return None if isinstance(value, bool) else f"must be true or false (got {_short(value)})."
    if value_type == ValueType.STRING:
        if not isinstance(value, str):
            return f"must be a string (got {_short(value)})."
        if len(value) > MAX_STRING:
            return f"must be at most {MAX_STRING} characters (got {len(value)})."
        return "must not contain NUL characters." if "\x00" in value else None
    if value_type == ValueType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number (got {_short(value)})."
        if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
            return f"whole numbers must be within +-2^53 (what a double holds exactly); got {_short(value)}."
        return None if isinstance(value, int) or math.isfinite(value) else "must be a finite number."
    if value_type == ValueType.JSON:
        problem = jsonsafety.describe(value)
        if problem is not None:
            return f"is not storable JSON: {problem}"
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode()) > MAX_JSON_BYTES:
            return f"must be at most {MAX_JSON_BYTES // 1024} KiB of JSON."
        return "must not contain NUL characters." if "\\u0000" in text else None
    return f"unknown flag type {value_type!r}."


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)[:40] if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text


def validate_value(value_type: str, value: Any, field: str) -> None:
    problem = value_problem(value_type, value)
    if problem is not None:
        raise ValidationError({field: [f"The value {problem}"]})


def parse_percent(value: Any) -> Decimal | None:
    """A percent from 0 to 100 with at most two decimals, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or not Decimal("0") <= number <= Decimal("100"):
        return None
    if number != number.quantize(Decimal("0.01")):
        return None
    return number.quantize(Decimal("0.01"))


# --- the document's shape ---------------------------------------------------------------------

def _number(value: Decimal | None) -> float:
    return float(value) if value is not None else 0.0


def rule_as_dict(rule: FlagRule) -> dict[str, Any]:
    """A rule as the configuration document (and the API) shows it."""
    entry: dict[str, Any] = {"id": rule.rule_id, "type": rule.kind}
    audience_keys = [link.audience.key for link in sorted(rule.audience_links.all(), key=lambda a: (a.position, a.pk))]
    if rule.kind == Kind.FORCE:
        entry.update(audiences=audience_keys, value=rule.value)
    elif rule.kind == Kind.UNITS:
        entry.update(units=dict(sorted((rule.units or {}).items())), hashed_units={})
    elif rule.kind == Kind.ROLLOUT:
        entry.update(audiences=audience_keys, value=rule.value, percent=_number(rule.percent), salt=rule.salt)
    else:
        entry.update(experiment=rule.experiment.key if rule.experiment_id else None, values=dict(rule.values or {}))
    return entry


def flag_entry(flag: Flag, environment: str, enabled: bool, rules: Sequence[FlagRule]) -> dict[str, Any]:
    """One flag of the configuration document of ``environment``."""
    return {
        "key": flag.key, "type": flag.value_type, "default": flag.default_value, "enabled": enabled,
        "unit_salt": "",
        "rules": [rule_as_dict(r) for r in sorted(rules, key=lambda r: (r.position, r.pk))],
    }


def flags_queryset():
    return Flag.objects.order_by("key").prefetch_related(
        "environment_states__environment", "rules__environment", "rules__audience_links__audience",
        "rules__experiment",
    )


def environment_view(flag: Flag, environment: str) -> tuple[bool, list[FlagRule]]:
    """(on?, rules) of a flag in one environment, from prefetched rows."""
    enabled = next((s.enabled for s in flag.environment_states.all() if s.environment.key == environment), True)
    return enabled, [r for r in flag.rules.all() if r.environment.key == environment]


def flags_document(environment: str) -> list[dict[str, Any]]:
    """Every flag as the document of ``environment`` holds it, sorted by key (a few queries)."""
    return [flag_entry(flag, environment, *environment_view(flag, environment)) for flag in flags_queryset()]


def flag_as_dict(flag: Flag) -> dict[str, Any]:
    """The API's view: the definition and, per environment, on/off and rules."""
    keys = list(Environment.objects.values_list("key", flat=True))
    keys += sorted({r.environment.key for r in flag.rules.all()} - set(keys))
    envs = {}
    for key in keys:
        enabled, rules = environment_view(flag, key)
        envs[key] = {"enabled": enabled, "rules": [rule_as_dict(r) for r in sorted(rules, key=lambda r: (r.position, r.pk))]}
    return {
        "key": flag.key, "name": flag.name, "description": flag.description, "type": flag.value_type,
        "default": flag.default_value, "environments": envs,
        "created_at": flag.created_at, "updated_at": flag.updated_at,
    }


# --- rules -------------------------------------------------------------------------------------

class _RuleErrors:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, index: int, kind: Any, text: str) -> None:
        self.messages.append(f"Rule {index + 1} ({kind if isinstance(kind, str) else '?'}): {text}")


def _unit_values(rule: Mapping[str, Any], value_type: str, where, errors: _RuleErrors) -> dict[str, Any] | None:
    """``units`` as ``{unit id: value}``: a map, or a list of ids sharing ``value``."""
    units = rule.get("units")
    if isinstance(units, list):
        if "value" not in rule:
            errors.add(*where, "a list of units needs a value (or give units as {\"unit id\": value}).")
            return None
        units = {u: rule["value"] for u in units if isinstance(u, str)} if all(isinstance(u, str) for u in units) else None
    elif "value" in rule:
        errors.add(*where, "value goes with a list of units; with a map each unit has its own value.")
        return None
    if not isinstance(units, dict) or not units:
        errors.add(*where, 'units must be a non-empty map {"unit id": value} or a list of unit ids with a value.')
        return None
    if len(units) > MAX_UNITS:
        errors.add(*where, f"at most {MAX_UNITS} units per rule.")
        return None
    for unit, value in units.items():
        if not unit or len(unit) > MAX_UNIT_ID or "\x00" in unit:
            errors.add(*where, f"unit ids are 1-{MAX_UNIT_ID} characters without NUL.")
            return None
        problem = value_problem(value_type, value)
        if problem is not None:
            errors.add(*where, f"the value of unit {unit[:64]!r} {problem}")
            return None
    if rule.get("hashed_units") not in (None, {}):
        errors.add(*where, "hashed_units is computed for client documents; give units.")
        return None
    return dict(units)


def _experiment_values(flag_key: str, rule: Mapping[str, Any], value_type: str, where, errors: _RuleErrors):
    key = rule.get("experiment")
    experiment = Experiment.objects.filter(key=key).first() if isinstance(key, str) and len(key) <= 64 else None
    if experiment is None:
        errors.add(*where, f"experiment: no experiment {str(key)[:64]!r}.")
        return None, None
    variants = {v.key: v for v in experiment.variants.all()}
    given = rule.get("values")
    if given is None:  # default: each variant's payload member named like the flag
        values = {k: v.payload[flag_key] for k, v in variants.items()
                  if isinstance(v.payload, dict) and flag_key in v.payload
                  and value_problem(value_type, v.payload[flag_key]) is None}
    elif not isinstance(given, dict):
        errors.add(*where, 'values must be a map {"variant key": value}.')
        return None, None
    else:
        values = dict(given)
    unknown = sorted(set(values) - set(variants))
    if unknown:
        errors.add(*where, f"values: {unknown[0][:64]!r} is not a variant of {experiment.key} "
                           f"(variants: {', '.join(variants)}).")
        return None, None
    if not values:
        errors.add(*where, f"values: give a value for at least one variant of {experiment.key} (no variant's "
                           f"payload has a {flag_key!r} member of the flag's type).")
        return None, None
    for variant, value in values.items():
        problem = value_problem(value_type, value)
        if problem is not None:
            errors.add(*where, f"the value for variant {variant!r} {problem}")
            return None, None
    return experiment, values


def _clean_rule(flag: Flag, i: int, rule: Any, existing: dict[str, FlagRule], errors: _RuleErrors):
    """One input rule as (row or None, fields, audiences) or None after recording its errors."""
    if not isinstance(rule, dict):
        errors.add(i, None, "must be an object.")
        return None
    kind = rule.get("type")
    where = (i, kind)
    if kind not in Kind.values:
        errors.add(*where, f"type must be one of {', '.join(Kind.values)}.")
        return None
    extra = sorted(set(rule) - RULE_MEMBERS[kind])
    if extra:
        errors.add(*where, f"{extra[0][:64]!r} is not a member of a {kind} rule "
                           f"(members: {', '.join(sorted(RULE_MEMBERS[kind]))}).")
        return None
    row = None
    if rule.get("id") is not None:
        row = existing.get(rule["id"]) if isinstance(rule["id"], str) else None
        if row is None:
            errors.add(*where, f"id {str(rule['id'])[:24]!r} is not a rule of this flag in this environment "
                               "(leave id out for a new rule).")
            return None
        if row.kind != kind:
            errors.add(*where, f"rule {row.rule_id} is a {row.kind} rule; leave id out to add a rule of another type.")
            return None
    fields: dict[str, Any] = {"kind": kind, "value": None, "percent": None, "units": {}, "experiment": None,
                              "values": {}, "salt": row.salt if row is not None else ""}
    audiences: list = []
    if kind in (Kind.FORCE, Kind.ROLLOUT):
        if "value" not in rule:
            errors.add(*where, "value is required.")
            return None
        problem = value_problem(flag.value_type, rule["value"])
        if problem is not None:
            errors.add(*where, f"the value {problem}")
            return None
        fields["value"] = rule["value"]
        try:
            audiences = audience_services.resolve_keys(rule.get("audiences", []))
        except ValidationError as e:
            errors.add(*where, "audiences: " + " ".join(e.message_dict["audiences"]))
            return None
    if kind == Kind.ROLLOUT:
        percent = parse_percent(rule.get("percent"))
        if percent is None:
            errors.add(*where, f"percent must be a number from 0 to 100 with at most two decimals "
                               f"(got {_short(rule.get('percent'))}).")
            return None
        fields["percent"] = percent
        salt = rule.get("salt")
        if row is not None:
            if salt is not None and salt != row.salt:
                errors.add(*where, f"the salt of rule {row.rule_id} is fixed ({row.salt!r}): changing it would "
                                   "reshuffle its units. Add a new rule for a fresh rollout.")
                return None
        elif salt is not None:
            if not isinstance(salt, str) or not 1 <= len(salt) <= 128 or "\x00" in salt:
                errors.add(*where, "salt must be 1-128 characters.")
                return None
            fields["salt"] = salt
        else:
            fields["salt"] = flag.key
    elif kind == Kind.UNITS:
        units = _unit_values(rule, flag.value_type, where, errors)
        if units is None:
            return None
        fields["units"] = units
    elif kind == Kind.EXPERIMENT:
        experiment, values = _experiment_values(flag.key, rule, flag.value_type, where, errors)
        if experiment is None:
            return None
        fields["experiment"], fields["values"] = experiment, values
    return row, fields, audiences


@transaction.atomic
def set_environment(
    flag: Flag, environment: str, *, enabled: bool | None = None, rules: Any = None, actor: str | None = None,
) -> Flag:
    """Switch a flag on/off in an environment and/or replace its rule list there.

    Rules given with the ``id`` of one of the flag's rules update it in place (its id and salt
    stay); rules without ``id`` are new; rules not listed are deleted. The flag's row lock
    serialises concurrent edits of one flag.
    """
    env = environments.resolve(environment)
    flag = Flag.objects.select_for_update().get(pk=flag.pk)
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise ValidationError({"enabled": ["Must be true or false."]})
        state = FlagEnvironment.objects.filter(flag=flag, environment=env).first()
        if state is None or state.enabled != enabled:
            state = state or FlagEnvironment(flag=flag, environment=env)
            state.enabled = enabled
            state._change_reason = _reason(actor, f"{'on' if enabled else 'off'} in {env.key}")
            state.save()
    if rules is not None:
        _replace_rules(flag, env, rules, actor)
    return flag


def _replace_rules(flag: Flag, env: Environment, rules: Any, actor: str | None) -> None:
    if not isinstance(rules, list):
        raise ValidationError({"rules": ["Give a list of rules (an empty list removes them all)."]})
    if len(rules) > MAX_RULES:
        raise ValidationError({"rules": [f"At most {MAX_RULES} rules per environment."]})
    existing = {r.rule_id: r for r in FlagRule.objects.filter(flag=flag, environment=env).prefetch_related(
        "audience_links__audience")}
    ids = [r.get("id") for r in rules if isinstance(r, dict) and r.get("id") is not None]
    if len(ids) != len({str(i) for i in ids}):
        raise ValidationError({"rules": ["Each rule id may appear once."]})
    errors = _RuleErrors()
    cleaned = [_clean_rule(flag, i, r, existing, errors) for i, r in enumerate(rules)]
    if errors.messages:
        raise ValidationError({"rules": errors.messages})
    kept = set()
    for position, (row, fields, audiences) in enumerate(cleaned):
        created = row is None
        row = row or FlagRule(flag=flag, environment=env)
        fields["position"] = position
        if created or any(getattr(row, f) != v for f, v in fields.items()):
            for f, v in fields.items():
                setattr(row, f, v)
            row._change_reason = _reason(actor, f"{'created' if created else 'changed'} in {env.key}")
            row.save()
        kept.add(row.pk)
        _set_rule_audiences(row, audiences, actor)
    for row in existing.values():
        if row.pk not in kept:
            row._change_reason = _reason(actor, f"deleted in {env.key}")
            row.delete()


def _set_rule_audiences(rule: FlagRule, audiences: list, actor: str | None) -> None:
    links = {link.audience_id: link for link in rule.audience_links.all()}
    for i, audience in enumerate(audiences):
        link = links.pop(audience.pk, None) or FlagRuleAudience(rule=rule, audience=audience)
        if link.pk is None or link.position != i:
            link.position = i
            link._change_reason = _reason(actor, "audience set")
            link.save()
    for link in links.values():
        link._change_reason = _reason(actor, "audience removed")
        link.delete()


# --- flags -------------------------------------------------------------------------------------

def _check_type(value_type: Any) -> None:
    if value_type not in ValueType.values:
        raise ValidationError({"type": [f"Must be one of {', '.join(ValueType.values)}."]})


@transaction.atomic
def create_flag(data: Mapping[str, Any], *, actor: str | None = None) -> Flag:
    """Create a flag; ``environments`` (``{env: {"enabled": bool, "rules": [...]}}``) is optional."""
    if data.get("key") == "evaluate":
        raise ValidationError({"key": ["'evaluate' is reserved (POST /api/v1/flags/evaluate)."]})
    value_type = data.get("value_type", ValueType.BOOLEAN)
    _check_type(value_type)
    default = data["default_value"] if "default_value" in data else DEFAULTS[value_type]
    validate_value(value_type, default, "default")
    flag = Flag(**{f: data[f] for f in FLAG_FIELDS if f in data})
    flag.value_type, flag.default_value = value_type, default
    flag.full_clean(validate_unique=True)
    flag._change_reason = _reason(actor, "created")
    _save_unique(flag)
    _apply_environments(flag, data.get("environments"), actor)
    return flag


def _apply_environments(flag: Flag, envs: Any, actor: str | None) -> None:
    if envs is None:
        return
    if not isinstance(envs, dict):
        raise ValidationError({"environments": ['Give {"production": {"enabled": true, "rules": [...]}, ...}.']})
    for key, spec in envs.items():
        if not isinstance(spec, dict) or set(spec) - {"enabled", "rules"}:
            raise ValidationError({"environments": [f"{str(key)[:32]!r}: give enabled and/or rules."]})
        set_environment(flag, key, enabled=spec.get("enabled"), rules=spec.get("rules"), actor=actor)


@transaction.atomic
def update_flag(flag: Flag, data: Mapping[str, Any], *, actor: str | None = None) -> Flag:
    """Change name, description, type or default (every value of the flag must keep its type)."""
    flag = Flag.objects.select_for_update().get(pk=flag.pk)
    if "key" in data and data["key"] != flag.key:
        raise ValidationError({"key": ["A flag's key is fixed once created: applications and salts refer to it."]})
    value_type = data.get("value_type", flag.value_type)
    _check_type(value_type)
    default = data.get("default_value", flag.default_value)
    validate_value(value_type, default, "default")
    if value_type != flag.value_type:
        for rule in flag.rules.select_related("environment"):
            values = [rule.value] if rule.kind in (Kind.FORCE, Kind.ROLLOUT) else [
                *(rule.units or {}).values(), *(rule.values or {}).values()]
            if any(value_problem(value_type, v) is not None for v in values):
                raise ValidationError({"type": [
                    f"Rule {rule.rule_id} in {rule.environment.key} has values that are not {value_type}; "
                    "change the rules first."
                ]})
    for field in ("name", "description"):
        if field in data:
            setattr(flag, field, data[field])
    flag.value_type, flag.default_value = value_type, default
    flag.full_clean(validate_unique=False)
    flag._change_reason = _reason(actor, "changed")
    flag.save()
    _apply_environments(flag, data.get("environments"), actor)
    return flag


@transaction.atomic
def delete_flag(flag: Flag, *, actor: str | None = None) -> None:
    flag = Flag.objects.select_for_update().get(pk=flag.pk)
    for rule in flag.rules.all():
        rule._change_reason = _reason(actor, "deleted with the flag")
        rule.delete()
    flag._change_reason = _reason(actor, "deleted")
    flag.delete()


def erase_unit(unit_id: str) -> int:
    """Remove a unit id from every ``units`` rule and from those rules' history (erasure of a
    data subject, like QA overrides); a rule left without units is deleted. Returns the number of
    rules changed. The caller holds the transaction."""
    changed = 0
    for rule in FlagRule.objects.select_for_update().filter(kind=Kind.UNITS, units__has_key=unit_id):
        rule.units = {u: v for u, v in rule.units.items() if u != unit_id}
        rule._change_reason = "unit erased"
        if rule.units:
            rule.save()
        else:
            rule.delete()
        changed += 1
    for record in FlagRule.history.filter(units__has_key=unit_id):
        record.units = {u: v for u, v in record.units.items() if u != unit_id}
        record.save(update_fields=["units"])
    return changed
