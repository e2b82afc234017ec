"""Feature flags from the configuration document (docs/assignment.md section 6a).

The first rule that matches decides: ``force`` (the unit is in every audience), ``units``
(listed unit ids, hashed in the client document), ``rollout`` (in every audience and
``bucket("flag", salt, unit_id) < units(percent)``: ramping up only adds units) or
``experiment`` (the experiment enrols the unit in a variant listed in ``values``; the client
logs that exposure exactly as ``assign`` does). Otherwise the default; a switched-off flag
answers its default with reason ``disabled``.

Results that do not depend on the unit are built once, so a flag costs a few closure calls.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from .audiences import Audiences
from .evaluator import BUCKETS, NO_CONFIG, Assignment, override_hash, percent_to_units

FORCE, UNITS, ROLLOUT, EXPERIMENT = "force", "units", "rollout", "experiment"
DEFAULT, DISABLED, UNKNOWN_FLAG = "default", "disabled", "unknown_flag"
FLAG_REASONS = (FORCE, UNITS, ROLLOUT, EXPERIMENT, DEFAULT, DISABLED, UNKNOWN_FLAG)


class FlagResult(NamedTuple):
    """One flag's answer. ``value`` may be shared between calls: treat it as read-only.
    ``assignment`` is the experiment's answer when an experiment rule decided."""

    key: str
    value: Any
    reason: str
    rule_id: str | None = None
    experiment: str | None = None
    variant: str | None = None
    assignment: Assignment | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "reason": self.reason, "rule_id": self.rule_id,
                "experiment": self.experiment, "variant": self.variant}


_EMPTY: Mapping[str, Any] = {}
Rule = Callable[[str, Mapping[str, Any]], "FlagResult | None"]


def _gate(checks: tuple, then: Rule) -> Rule:
    if not checks:
        return then

    def gated(unit_id: str, attrs: Mapping[str, Any]) -> FlagResult | None:
        for check in checks:
            if check(attrs) is not None:
                return None
        return then(unit_id, attrs)
    return gated


def _compile_rule(key: str, spec: Mapping[str, Any], unit_salt: str, experiments: Mapping[str, Any],
                  audiences: Audiences) -> Rule | None:
    rule_id = str(spec["id"]) if spec.get("id") is not None else None
    kind = spec.get("type")
    if kind in (FORCE, ROLLOUT):
        result = FlagResult(key, spec.get("value"), kind, rule_id)
        checks = audiences.checks(spec.get("audiences"))
        if kind == FORCE:
            return _gate(checks, lambda unit_id, attrs: result)
        threshold = percent_to_units(spec.get("percent") or 0)
        if threshold <= 0:
            return None
        if threshold >= BUCKETS:
            return _gate(checks, lambda unit_id, attrs: result)
        prefix = f"flag:{spec.get('salt') or key}:".encode()  # bucket("flag", salt, unit_id), inlined
        sha256, from_bytes = hashlib.sha256, int.from_bytes

        def rollout(unit_id: str, attrs: Mapping[str, Any]) -> FlagResult | None:
            if from_bytes(sha256(prefix + unit_id.encode()).digest()[:8], "big") % BUCKETS < threshold:
                return result
            return None
        return _gate(checks, rollout)
    if kind == UNITS:
        listed = {str(u): FlagResult(key, v, UNITS, rule_id) for u, v in (spec.get("units") or {}).items()}
        hashed = {str(h): FlagResult(key, v, UNITS, rule_id)
                  for h, v in (spec.get("hashed_units") or {}).items()}
        if not hashed:
            return lambda unit_id, attrs: listed.get(unit_id)

        def units(unit_id: str, attrs: Mapping[str, Any]) -> FlagResult | None:
            found = listed.get(unit_id)
            return found if found is not None else hashed.get(override_hash(unit_salt, unit_id))
        return units
    if kind == EXPERIMENT:
        name = str(spec.get("experiment") or "")
        experiment = experiments.get(name)
        values = spec.get("values") or {}
        if experiment is None or not isinstance(values, Mapping) or not values:
            return None

        def enrolled(unit_id: str, attrs: Mapping[str, Any]) -> FlagResult | None:
            answer = experiment.evaluate(unit_id, attrs, None)
            if answer.in_experiment and answer.variant in values:
                return FlagResult(key, values[answer.variant], EXPERIMENT, rule_id, name, answer.variant, answer)
            return None
        return enrolled
    return None  # a rule kind this SDK does not know never matches


class _Flag:
    __slots__ = ("key", "rules", "otherwise")

    def __init__(self, spec: Mapping[str, Any], experiments: Mapping[str, Any], audiences: Audiences) -> None:
        self.key = key = str(spec["key"])
        default = spec.get("default")
        if spec.get("enabled", True) is False:
            self.rules, self.otherwise = (), FlagResult(key, default, DISABLED)
            return
        self.otherwise = FlagResult(key, default, DEFAULT)
        unit_salt = str(spec.get("unit_salt") or "")
        rules = (_compile_rule(key, r, unit_salt, experiments, audiences)
                 for r in spec.get("rules") or [] if isinstance(r, Mapping))
        self.rules = tuple(r for r in rules if r is not None)

    def evaluate(self, unit_id: str, attributes: Mapping[str, Any]) -> FlagResult:
        for rule in self.rules:
            result = rule(unit_id, attributes)
            if result is not None:
                return result
        return self.otherwise


class FlagEvaluator:
    """The compiled ``flags`` of one document (immutable; share it between threads)."""

    __slots__ = ("_flags",)

    def __init__(self, specs: Any, experiments: Mapping[str, Any], audiences: Audiences) -> None:
        self._flags: dict[str, _Flag] = {}
        for spec in specs if isinstance(specs, list) else ():
            if isinstance(spec, Mapping):
                flag = _Flag(spec, experiments, audiences)
                self._flags[flag.key] = flag

    def __contains__(self, key: object) -> bool:
        return key in self._flags

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._flags)

    def evaluate(self, key: str, unit_id: str, attributes: Mapping[str, Any] | None = None,
                 default: Any = None) -> FlagResult:
        """A key the document lacks answers ``default`` with reason ``unknown_flag``."""
        flag = self._flags.get(key)
        if flag is None:
            return FlagResult(key, default, UNKNOWN_FLAG)
        for rule in flag.rules:  # _Flag.evaluate inlined: the hot path
            result = rule(unit_id, attributes if attributes is not None else _EMPTY)
            if result is not None:
                return result
        return flag.otherwise

    def evaluate_many(self, unit_id: str, attributes: Mapping[str, Any] | None = None,
                      keys: Iterable[str] | None = None) -> list[FlagResult]:
        attributes = attributes or {}
        return [self.evaluate(k, unit_id, attributes) for k in (self._flags if keys is None else keys)]


class FlagsMixin:
    """``Client.get_flag`` / ``Client.get_flags``: local evaluation, exposure logged like ``assign``."""

    def get_flag(self, key: str, unit_id: str, attributes: Mapping[str, Any] | None = None,
                 default: Any = None) -> FlagResult:
        """The flag's value for ``unit_id``; ``default`` when the flag (or any configuration) is missing."""
        evaluator = self._evaluator  # type: ignore[attr-defined]
        if evaluator is None:
            return FlagResult(key, default, NO_CONFIG)
        result = evaluator.flags.evaluate(key, unit_id, attributes, default)
        self._flag_exposure(result, unit_id, attributes, evaluator.version)
        return result

    def get_flags(self, unit_id: str, attributes: Mapping[str, Any] | None = None,
                  keys: Iterable[str] | None = None) -> dict[str, FlagResult]:
        """Every flag of the configuration (or ``keys``) for ``unit_id``, by key."""
        evaluator = self._evaluator  # type: ignore[attr-defined]
        if evaluator is None:
            return {k: FlagResult(k, None, NO_CONFIG) for k in keys or ()}
        out = {}
        for result in evaluator.flags.evaluate_many(unit_id, attributes, keys):
            self._flag_exposure(result, unit_id, attributes, evaluator.version)
            out[result.key] = result
        return out

    def _flag_exposure(self, result: FlagResult, unit_id: str, attributes: Mapping[str, Any] | None,
                       version: str | None) -> None:
        answer = result.assignment
        if answer is not None and answer.reason == "assigned" and self.log_exposures:  # type: ignore[attr-defined]
            self._expose(answer, unit_id, attributes, version)  # type: ignore[attr-defined]
