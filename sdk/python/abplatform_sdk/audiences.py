"""Audiences: named sets of targeting conditions (docs/assignment.md section 5a).

``{"match": "all" | "any", "conditions": [rule, ...]}``: every / at least one condition passes
(section 5 semantics, the same compiled rules as experiment targeting); no conditions: every
unit is a member; an audience the document does not define admits nobody.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .evaluator import compile_rule

#: ``attributes -> None`` for a member, else why not.
Check = Callable[[Mapping[str, Any]], "str | None"]


def _everyone(attrs: Mapping[str, Any]) -> None:
    return None


def _nobody(key: str) -> Check:
    message = f"audience {key!r} is not defined"
    return lambda attrs: message


def compile_audience(key: str, spec: Any) -> Check:
    if not isinstance(spec, Mapping):
        return _nobody(key)
    checks = tuple(compile_rule(c) for c in spec.get("conditions") or [] if isinstance(c, Mapping))
    if not checks:
        return _everyone
    prefix = f"not in audience {key!r}: "
    if spec.get("match", "all") == "any":
        def any_member(attrs: Mapping[str, Any]) -> str | None:
            for check in checks:
                if check(attrs) is None:
                    return None
            return prefix + "no condition passes"
        return any_member

    def all_member(attrs: Mapping[str, Any]) -> str | None:
        for check in checks:
            failure = check(attrs)
            if failure is not None:
                return prefix + failure
        return None
    return all_member


class Audiences:
    """The compiled ``audiences`` of one document."""

    __slots__ = ("_checks",)

    def __init__(self, specs: Mapping[str, Any] | None) -> None:
        if specs is not None and not isinstance(specs, Mapping):
            specs = {}
        self._checks = {str(k): compile_audience(str(k), v) for k, v in (specs or {}).items()}

    def checks(self, keys: Iterable[Any] | None) -> tuple[Check, ...]:
        """Membership checks of every listed audience (those admitting everyone are skipped)."""
        out = (self._checks.get(str(k)) or _nobody(str(k)) for k in keys or ())
        return tuple(c for c in out if c is not _everyone)

    def is_member(self, key: str, attributes: Mapping[str, Any]) -> bool:
        return all(check(attributes) is None for check in self.checks([key]))
