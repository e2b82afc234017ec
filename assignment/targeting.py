"""Targeting rules: plain-Python predicates over a unit's flat attributes (never ``eval``).

A rule is ``{"attribute": name, "operator": op, "values": [...]}``; every rule of an experiment
must pass (AND). Type semantics, shared with every SDK (see docs/assignment.md):

* A *missing* attribute (absent or ``null``) passes only ``not_exists``; every other operator,
  the negative ones included, fails. Unknown units are never enrolled by accident.
* ``equals``/``not_equals``/``in``/``not_in`` compare with :func:`same`: booleans only equal
  booleans (or the strings ``"true"``/``"false"``); when one side is a number, a string that
  reads as a decimal number is compared numerically (query-string attributes arrive as
  strings); two strings compare exactly (case-sensitive, no trimming).
* ``gt``/``gte``/``lt``/``lte`` are numeric only: both sides must be numbers or decimal strings,
  otherwise the rule fails.
* ``contains``: the attribute and ``values[0]`` must both be strings; case-sensitive substring.
* ``semver_eq``/``semver_gt``/``semver_gte``/``semver_lt``/``semver_lte``: both sides are
  semantic versions (semver.org 2.0.0), compared by semver precedence; otherwise the rule fails.
* ``before``/``after``: both sides are ISO 8601 dates or timestamps with an offset, compared as
  instants (strictly earlier / later); otherwise the rule fails.
* ``exists``/``not_exists`` ignore ``values``.

Pure Python, no Django import (the operand parsers live in ``experiments.operands``).
"""
from __future__ import annotations

import operator as _op
from collections.abc import Callable, Mapping
from typing import Any

from experiments.operands import as_number, instant_key, semver_key

OPERATORS = (
    "equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte",
    "contains", "exists", "not_exists",
    "semver_eq", "semver_gt", "semver_gte", "semver_lt", "semver_lte", "before", "after",
)
_ORDERED: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], bool], str]] = {
    "semver_eq": (semver_key, _op.eq, "=="), "semver_gt": (semver_key, _op.gt, ">"),
    "semver_gte": (semver_key, _op.ge, ">="), "semver_lt": (semver_key, _op.lt, "<"),
    "semver_lte": (semver_key, _op.le, "<="),
    "before": (instant_key, _op.lt, "before"), "after": (instant_key, _op.gt, "after"),
}
_BOOL_STRINGS = {"true": True, "false": False}

# A compiled rule: attributes -> None when it passes, else the human reason it failed.
Check = Callable[[Mapping[str, Any]], "str | None"]


def same(attribute: Any, value: Any) -> bool:
    """Equality between an attribute value and a rule value, as specified above."""
    if isinstance(attribute, bool) or isinstance(value, bool):
        left = _BOOL_STRINGS.get(attribute) if isinstance(attribute, str) else attribute
        right = _BOOL_STRINGS.get(value) if isinstance(value, str) else value
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if isinstance(attribute, str) and isinstance(value, str):
        return attribute == value
    left, right = as_number(attribute), as_number(value)
    return left is not None and right is not None and left == right


def _show(value: Any) -> str:
    return repr(value)


def compile_rule(rule: Mapping[str, Any]) -> Check:
    """Turn one rule into a fast check; unknown operators make a rule that always fails."""
    name = str(rule.get("attribute", ""))
    operator = rule.get("operator")
    values = list(rule.get("values") or [])
    first = values[0] if values else None
    missing = f"{name} is missing"

    if operator == "exists":
        def check(attrs):
            return None if attrs.get(name) is not None else missing
        return check
    if operator == "not_exists":
        def check(attrs):
            value = attrs.get(name)
            return None if value is None else f"{name} {_show(value)} exists"
        return check
    if operator in ("equals", "not_equals", "in", "not_in"):
        candidates = [first] if operator in ("equals", "not_equals") else values
        # Fast path: strings compared with strings are a set lookup.
        string_set = frozenset(v for v in candidates if isinstance(v, str))
        only_strings = len(string_set) == len(candidates)
        negate = operator in ("not_equals", "not_in")
        shown = _show(first) if operator in ("equals", "not_equals") else _show(values)
        verb = {"equals": "!=", "not_equals": "==", "in": "not in", "not_in": "in"}[operator]

        def check(attrs):
            value = attrs.get(name)
            if value is None:
                return missing
            if only_strings and isinstance(value, str):
                hit = value in string_set
            else:
                hit = any(same(value, c) for c in candidates)
            if hit is negate:
                return f"{name} {_show(value)} {verb} {shown}"
            return None
        return check
    if operator in ("gt", "gte", "lt", "lte") or operator in _ORDERED:
        # Numeric operators are ordered comparisons whose key is the number (numeric strings too).
        if operator in _ORDERED:
            key, compare_keys, word = _ORDERED[operator]
        else:
            key, word = as_number, {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[operator]
            compare_keys = {
                "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
                "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
            }[operator]
        bound_key = key(first)

        def check(attrs):
            value = attrs.get(name)
            if value is None:
                return missing
            value_key = key(value)
            if value_key is None or bound_key is None:
                return f"{name} {_show(value)} is not comparable with {_show(first)}"
            if compare_keys(value_key, bound_key):
                return None
            return f"{name} {_show(value)} is not {word} {_show(first)}"
        return check
    if operator == "contains":
        def check(attrs):
            value = attrs.get(name)
            if value is None:
                return missing
            if isinstance(value, str) and isinstance(first, str) and first in value:
                return None
            return f"{name} {_show(value)} does not contain {_show(first)}"
        return check

    def check(attrs):
        return f"unknown operator {operator!r} on {name}"
    return check


def compile_rules(rules: list[Mapping[str, Any]]) -> tuple[Check, ...]:
    return tuple(compile_rule(rule) for rule in rules)


def first_failure(checks: tuple[Check, ...], attributes: Mapping[str, Any]) -> str | None:
    """The reason the first failing rule gives, or None when every rule passes."""
    for check in checks:
        failure = check(attributes)
        if failure is not None:
            return failure
    return None


def matches(rules: list[Mapping[str, Any]], attributes: Mapping[str, Any]) -> bool:
    """Convenience for callers that only need a yes/no."""
    return first_failure(compile_rules(rules), attributes) is None
