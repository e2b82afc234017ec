"""Evaluate feature flags from the configuration document (docs/assignment.md section 6a).

A flag has a type, a default and an ordered list of rules; the first rule that *matches*
decides the value, otherwise the default. Rule kinds:

* ``force``: the unit is in every listed audience -> ``value`` (reason ``force``);
* ``units``: the unit id is listed (raw, or hashed as QA overrides are) -> its value (``units``);
* ``rollout``: the unit is in every audience and ``bucket("flag", salt, unit_id) < units(percent)``
  -> ``value`` (``rollout``); the salt never changes with the percent, so ramping up only adds
  units;
* ``experiment``: the experiment, evaluated exactly as ``/assignments`` does, enrols the unit in
  a variant listed in ``values`` -> that value (``experiment``); the caller records the
  exposure (only then, and only for an ``assigned`` answer).

Everything that does not depend on the unit is built once: each rule is a closure that
returns a precomputed, immutable :class:`FlagResult` or ``None`` (fall through), so the hot
path allocates nothing. Pure Python, no Django import.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from .audiences import Audiences
from .clientdoc import override_hash
from .hashing import BUCKETS, percent_to_units, prefix_bucketer

FLAG_NAMESPACE = "flag"

FORCE = "force"
UNITS = "units"
ROLLOUT = "rollout"
EXPERIMENT = "experiment"
DEFAULT = "default"
DISABLED = "disabled"
UNKNOWN_FLAG = "unknown_flag"
FLAG_REASONS = (FORCE, UNITS, ROLLOUT, EXPERIMENT, DEFAULT, DISABLED, UNKNOWN_FLAG)
RULE_TYPES = (FORCE, UNITS, ROLLOUT, EXPERIMENT)
VALUE_TYPES = ("boolean", "string", "number", "json")


class FlagResult(NamedTuple):
    """One flag's answer for one unit. Shared between calls: treat ``value`` as read-only.

    ``exposure`` is True only when an experiment rule decided with an ``assigned`` answer:
    the one case that records an exposure (overrides never do)."""

    key: str
    value: Any
    reason: str
    rule_id: str | None = None
    experiment: str | None = None
    variant: str | None = None
    exposure: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "value": self.value, "reason": self.reason,
            "rule_id": self.rule_id, "experiment": self.experiment, "variant": self.variant,
        }


_EMPTY: Mapping[str, Any] = {}

#: A compiled rule: ``(unit_id, attributes) -> FlagResult`` when it matches, else ``None``.
Rule = Callable[[str, Mapping[str, Any]], "FlagResult | None"]


def flag_bucket(salt: str, unit_id: str) -> int:
    """``bucket("flag", salt, unit_id)`` (section 1)."""
    return prefix_bucketer(FLAG_NAMESPACE, salt)(unit_id)


def _always(result: FlagResult) -> Rule:
    def rule(unit_id: str, attributes: Mapping[str, Any]) -> FlagResult:
        return result
    return rule


def _audience_gate(tests: tuple, result: FlagResult) -> Rule:
    if len(tests) == 1:
        (only,) = tests

        def one(unit_id, attributes):
            return result if only(attributes) else None
        return one

    def every(unit_id, attributes):
        for test in tests:
            if not test(attributes):
                return None
        return result
    return every


def _force(key: str, rule_id: str | None, spec: Mapping, audiences: Audiences) -> tuple[Rule, bool]:
    result = FlagResult(key, spec.get("value"), FORCE, rule_id)
    tests = audiences.predicates(spec.get("audiences") or ())
    if not tests:
        return _always(result), True
    return _audience_gate(tests, result), False


def _units(key: str, rule_id: str | None, spec: Mapping, unit_salt: str) -> Rule | None:
    by_unit = {str(u): FlagResult(key, v, UNITS, rule_id) for u, v in (spec.get("units") or {}).items()}
    hashed = {str(h): FlagResult(key, v, UNITS, rule_id) for h, v in (spec.get("hashed_units") or {}).items()}
    if not by_unit and not hashed:
        return None
    get = by_unit.get
    if not hashed:
        def listed(unit_id, attributes):
            return get(unit_id)
        return listed
    get_hashed = hashed.get

    def listed_or_hashed(unit_id, attributes):
        found = get(unit_id)
        if found is None:
            found = get_hashed(override_hash(unit_salt, unit_id))
        return found
    return listed_or_hashed


def _rollout(key: str, rule_id: str | None, spec: Mapping, audiences: Audiences) -> tuple[Rule | None, bool]:
    result = FlagResult(key, spec.get("value"), ROLLOUT, rule_id)
    threshold = percent_to_units(spec.get("percent") or 0)
    tests = audiences.predicates(spec.get("audiences") or ())
    if threshold <= 0:
        return None, False  # nobody's bucket is below 0
    if threshold >= BUCKETS:
        return (_always(result), True) if not tests else (_audience_gate(tests, result), False)
    # bucket("flag", salt, unit_id) inlined (hashing.prefix_bucketer): one call less per unit.
    prefix = f"{FLAG_NAMESPACE}:{spec.get('salt') or key}:".encode()
    sha256, from_bytes = hashlib.sha256, int.from_bytes
    if not tests:
        def rollout(unit_id, attributes):
            if from_bytes(sha256(prefix + unit_id.encode()).digest()[:8], "big") % BUCKETS < threshold:
                return result
            return None
        return rollout, False

    def gated_rollout(unit_id, attributes):
        for test in tests:
            if not test(attributes):
                return None
        if from_bytes(sha256(prefix + unit_id.encode()).digest()[:8], "big") % BUCKETS < threshold:
            return result
        return None
    return gated_rollout, False


def _experiment(key: str, rule_id: str | None, spec: Mapping, experiments: Mapping[str, Any]) -> Rule | None:
    name = str(spec.get("experiment") or "")
    experiment = experiments.get(name)
    values = spec.get("values") or {}
    if experiment is None or not values:
        return None  # an experiment this document lacks never enrols anybody: fall through
    by_variant = {
        str(variant): (
            FlagResult(key, value, EXPERIMENT, rule_id, name, str(variant), True),
            FlagResult(key, value, EXPERIMENT, rule_id, name, str(variant), False),
        )
        for variant, value in values.items()
    }
    evaluate = experiment.evaluate
    get = by_variant.get

    def enrolled(unit_id, attributes):
        answer = evaluate(unit_id, attributes)
        if answer.in_experiment:
            pair = get(answer.variant)
            if pair is not None:
                return pair[0] if answer.reason == "assigned" else pair[1]
        return None
    return enrolled


class _Flag:
    __slots__ = ("key", "type", "spec", "rules", "otherwise")

    def __init__(self, spec: Mapping[str, Any], experiments: Mapping[str, Any], audiences: Audiences):
        self.key = key = str(spec["key"])
        self.spec = spec
        self.type = str(spec.get("type") or "json")
        default = spec.get("default")
        rules: list[Rule] = []
        if spec.get("enabled", True) is False:
            self.otherwise = FlagResult(key, default, DISABLED)
            self.rules = ()
            return
        self.otherwise = FlagResult(key, default, DEFAULT)
        unit_salt = str(spec.get("unit_salt") or "")
        for rule_spec in spec.get("rules") or ():
            if not isinstance(rule_spec, Mapping):
                continue
            rule_id = str(rule_spec["id"]) if rule_spec.get("id") is not None else None
            kind = rule_spec.get("type")
            final = False
            if kind == FORCE:
                rule, final = _force(key, rule_id, rule_spec, audiences)
            elif kind == UNITS:
                rule = _units(key, rule_id, rule_spec, unit_salt)
            elif kind == ROLLOUT:
                rule, final = _rollout(key, rule_id, rule_spec, audiences)
            elif kind == EXPERIMENT:
                rule = _experiment(key, rule_id, rule_spec, experiments)
            else:
                rule = None  # a rule kind this evaluator does not know never matches
            if rule is None:
                continue
            if final:  # it matches everyone: later rules and the default are unreachable
                self.otherwise = rule("", {})
                break
            rules.append(rule)
        self.rules = tuple(rules)

    def evaluate(self, unit_id: str, attributes: Mapping[str, Any]) -> FlagResult:
        for rule in self.rules:
            result = rule(unit_id, attributes)
            if result is not None:
                return result
        return self.otherwise


class FlagEvaluator:
    """The compiled ``flags`` of one document; experiment rules use its compiled experiments."""

    __slots__ = ("_flags",)

    def __init__(
        self,
        specs: Iterable[Mapping[str, Any]] | None,
        experiments: Mapping[str, Any],
        audiences: Audiences,
    ):
        self._flags = {}
        for spec in specs or ():
            flag = _Flag(spec, experiments, audiences)
            self._flags[flag.key] = flag

    def __contains__(self, key: object) -> bool:
        return key in self._flags

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._flags)

    def spec(self, key: str) -> Mapping[str, Any] | None:
        flag = self._flags.get(key)
        return flag.spec if flag is not None else None

    def evaluate(self, key: str, unit_id: str, attributes: Mapping[str, Any] | None = None) -> FlagResult:
        """The flag's answer; a key the document lacks gets value None, reason ``unknown_flag``."""
        flag = self._flags.get(key)
        if flag is None:
            return FlagResult(key, None, UNKNOWN_FLAG)
        for rule in flag.rules:  # _Flag.evaluate inlined: the hot path
            result = rule(unit_id, attributes if attributes is not None else _EMPTY)
            if result is not None:
                return result
        return flag.otherwise

    def evaluate_many(
        self, unit_id: str, attributes: Mapping[str, Any] | None = None, keys: Iterable[str] | None = None
    ) -> list[FlagResult]:
        """Answers for ``keys`` in order (default: every flag of the document)."""
        attributes = attributes or {}
        flags = self._flags
        if keys is None:
            return [flag.evaluate(unit_id, attributes) for flag in flags.values()]
        out = []
        for key in keys:
            flag = flags.get(key)
            out.append(FlagResult(key, None, UNKNOWN_FLAG) if flag is None else flag.evaluate(unit_id, attributes))
        return out
