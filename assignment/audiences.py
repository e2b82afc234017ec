"""Audiences: named, reusable sets of targeting conditions (docs/assignment.md section 5a).

An audience is ``{"match": "all" | "any", "conditions": [rule, ...]}``; every condition is a
targeting rule with the exact semantics of section 5 (compiled by ``targeting.compile_rule``,
the same code experiments use). ``all``: every condition passes; ``any``: at least one does.
No conditions: everyone is a member. A reference to an audience the document does not define
makes nobody a member. Pure Python, no Django import.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .targeting import Check, compile_rule


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


def _undefined(key: str) -> Check:
    message = f"audience {key!r} is not defined"

    def undefined(attrs: Mapping[str, Any]) -> str:
        return message
    return undefined


class Audiences:
    """The compiled ``audiences`` of one document, by key."""

    __slots__ = ("_checks",)

    def __init__(self, specs: Mapping[str, Any] | None):
        self._checks = {str(k): compile_audience(str(k), v) for k, v in (specs or {}).items()}

    def check(self, key: str) -> Check:
        """The membership check of ``key`` (an undefined key admits nobody)."""
        return self._checks.get(key) or _undefined(key)

    def checks(self, keys: Iterable[Any]) -> tuple[Check, ...]:
        """Checks for every listed audience; those admitting everyone are left out (free)."""
        out = (self.check(str(k)) for k in keys or ())
        return tuple(c for c in out if c is not _everyone)

    def is_member(self, key: str, attributes: Mapping[str, Any]) -> bool:
        return self.check(key)(attributes) is None
