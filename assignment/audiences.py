"""Audiences: named, reusable sets of targeting conditions (docs/assignment.md section 5a).

An audience is ``{"match": "all" | "any", "conditions": [rule, ...]}``; every condition is a
targeting rule with the exact semantics of section 5 (compiled by ``targeting.compile_rule``,
the same code experiments use). ``all``: every condition passes; ``any``: at least one does.
No conditions: everyone is a member. A reference to an audience the document does not define
makes nobody a member. Pure Python, no Django import.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .targeting import Check, compile_rule

#: ``attributes -> bool``: membership without the explanation (flag rules only need yes/no).
Predicate = Callable[[Mapping[str, Any]], bool]


def _everyone(attrs: Mapping[str, Any]) -> None:
    return None


def compile_audience(key: str, spec: Any) -> Check:
    """``attributes -> None`` for a member, else a sentence naming the audience."""
    if not isinstance(spec, Mapping):
        return _undefined(key)
    conditions = [c for c in (spec.get("conditions") or []) if isinstance(c, Mapping)]
    if not conditions:
        return _everyone
    checks = tuple(compile_rule(c) for c in conditions)
    prefix = f"not in audience {key!r}: "
    if spec.get("match", "all") == "any":
        def any_member(attrs: Mapping[str, Any]) -> str | None:
            failure = None
            for check in checks:
                failure = check(attrs)
                if failure is None:
                    return None
            return prefix + "no condition passes" if len(checks) > 1 else prefix + str(failure)
        return any_member
    if len(checks) == 1:
        (only,) = checks

        def one_member(attrs: Mapping[str, Any]) -> str | None:
            failure = only(attrs)
            return None if failure is None else prefix + failure
        return one_member

    def all_member(attrs: Mapping[str, Any]) -> str | None:
        for check in checks:
            failure = check(attrs)
            if failure is not None:
                return prefix + failure
        return None
    return all_member


def _fast_condition(rule: Mapping[str, Any]) -> Predicate:
    """One condition as a yes/no; the common string set lookups skip building the failure
    sentence (the costly part of a failing check), anything else defers to the check itself."""
    check = compile_rule(rule)
    operator = rule.get("operator")
    values = list(rule.get("values") or [])
    if operator in ("equals", "not_equals"):
        values = values[:1]
    if operator in ("equals", "not_equals", "in", "not_in") and values and all(type(v) is str for v in values):
        name, strings = str(rule.get("attribute", "")), frozenset(values)
        negate = operator in ("not_equals", "not_in")

        def string_lookup(attrs: Mapping[str, Any]) -> bool:
            value = attrs.get(name)
            if type(value) is str:  # str against strings: a set lookup, exactly as targeting does
                return (value in strings) is not negate
            return check(attrs) is None
        return string_lookup
    return lambda attrs: check(attrs) is None


def compile_predicate(key: str, spec: Any) -> Predicate | None:
    """Membership as a yes/no (``None``: everyone is a member); same answers as the check."""
    if not isinstance(spec, Mapping):
        return lambda attrs: False
    conditions = [c for c in (spec.get("conditions") or []) if isinstance(c, Mapping)]
    if not conditions:
        return None
    tests = tuple(_fast_condition(c) for c in conditions)
    if len(tests) == 1:
        return tests[0]
    if spec.get("match", "all") == "any":
        return lambda attrs: any(t(attrs) for t in tests)
    return lambda attrs: all(t(attrs) for t in tests)


def _undefined(key: str) -> Check:
    message = f"audience {key!r} is not defined"

    def undefined(attrs: Mapping[str, Any]) -> str:
        return message
    return undefined


class Audiences:
    """The compiled ``audiences`` of one document, by key."""

    __slots__ = ("_checks", "_predicates")

    def __init__(self, specs: Mapping[str, Any] | None):
        self._checks = {str(k): compile_audience(str(k), v) for k, v in (specs or {}).items()}
        self._predicates = {str(k): compile_predicate(str(k), v) for k, v in (specs or {}).items()}

    def check(self, key: str) -> Check:
        """The membership check of ``key`` (an undefined key admits nobody)."""
        return self._checks.get(key) or _undefined(key)

    def checks(self, keys: Iterable[Any]) -> tuple[Check, ...]:
        """Checks for every listed audience; those admitting everyone are left out (free)."""
        out = (self.check(str(k)) for k in keys or ())
        return tuple(c for c in out if c is not _everyone)

    def predicates(self, keys: Iterable[Any]) -> tuple[Predicate, ...]:
        """Yes/no membership tests for every listed audience (everyone-audiences left out)."""
        out = []
        for key in keys or ():
            key = str(key)
            if key not in self._predicates:
                out.append(lambda attrs: False)  # undefined: nobody is a member
            elif self._predicates[key] is not None:
                out.append(self._predicates[key])
        return tuple(out)

    def is_member(self, key: str, attributes: Mapping[str, Any]) -> bool:
        return self.check(key)(attributes) is None
