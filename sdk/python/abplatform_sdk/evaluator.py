"""Local assignment from the configuration document, per docs/assignment.md (no I/O, no deps).

Everything here is pure computation: ``Evaluator(document).evaluate(key, unit_id, attributes)``
hashes, checks targeting, layers and allocation exactly as the server does, so a local answer
and a server answer never disagree. The test suite checks it against ``assignment/vectors.json``.
"""
from __future__ import annotations

import hashlib
import math
import operator as _op
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

SCHEMA_VERSION = 1
BUCKETS = 10_000

ASSIGNED = "assigned"
OVERRIDE = "override"
NOT_RUNNING = "not_running"
TARGETING = "targeting"
LAYER_HOLDOUT = "layer_holdout"
LAYER_OTHER_EXPERIMENT = "layer_other_experiment"
TRAFFIC_ALLOCATION = "traffic_allocation"
SHIPPED = "shipped"
DISABLED_IN_ENVIRONMENT = "disabled_in_environment"
#: SDK-only reasons: the experiment is not in the configuration, or there is no configuration.
UNKNOWN_EXPERIMENT = "unknown_experiment"
NO_CONFIG = "no_config"

_OVERRIDABLE = frozenset({"draft", "running", "paused"})
_SHIPPABLE = frozenset({"completed", "archived"})
_sha256 = hashlib.sha256
_from_bytes = int.from_bytes


class DocumentError(ValueError):
    """The configuration document is malformed or of an unsupported schema."""


class Assignment:
    """One answer. ``payload`` is shared with the evaluator: treat it as read-only."""

    __slots__ = ("experiment", "variant", "in_experiment", "reason", "detail", "payload", "phase")

    def __init__(self, experiment: str, variant: str | None, in_experiment: bool, reason: str,
                 detail: str, payload: Any, phase: int | None = None) -> None:
        self.experiment = experiment
        self.variant = variant
        self.in_experiment = in_experiment
        self.reason = reason
        self.detail = detail
        self.payload = payload
        self.phase = phase

    @property
    def records_exposure(self) -> bool:
        """Only hashed enrolments are exposures (overrides and fallbacks would bias analysis)."""
        return self.reason == ASSIGNED

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment, "variant": self.variant,
            "in_experiment": self.in_experiment, "reason": self.reason,
            "detail": self.detail, "payload": self.payload,
        }

    def __repr__(self) -> str:
        return f"Assignment({self.as_dict()!r})"


# --- hashing (section 1) and percentages (section 2) ---------------------------------------------

def bucket(namespace: str, salt: str, unit_id: str) -> int:
    """``uint64_be(SHA-256(namespace:salt:unit_id)[:8]) mod 10000``."""
    digest = _sha256(f"{namespace}:{salt}:{unit_id}".encode()).digest()
    return _from_bytes(digest[:8], "big") % BUCKETS


def override_hash(override_salt: str, unit_id: str) -> str:
    """Hex SHA-256 of ``override:<salt>:<unit_id>``: how a client-safe document names QA units."""
    return _sha256(f"override:{override_salt}:{unit_id}".encode()).hexdigest()


def _bucketer(namespace: str, salt: str) -> Callable[[str], int]:
    prefix = f"{namespace}:{salt}:".encode()

    def _bucket(unit_id: str) -> int:
        return _from_bytes(_sha256(prefix + unit_id.encode()).digest()[:8], "big") % BUCKETS

    return _bucket


def percent_to_units(percent: Any) -> int:
    units = int(float(percent) * 100 + 0.5 + 1e-9)
    return max(0, min(BUCKETS, units))


def variant_ranges(weights: list, traffic_allocation: Any) -> list[tuple[int, int]]:
    """``[start, end)`` buckets of each variant (section 3), integer arithmetic only."""
    units = [percent_to_units(w) for w in weights]
    total = sum(units)
    allocation = percent_to_units(traffic_allocation)
    if total <= 0:
        return [(0, 0) for _ in units]
    bounds, running = [0], 0
    for u in units:
        running += u
        bounds.append(BUCKETS * running // total)
    return [
        (bounds[i], bounds[i] + (bounds[i + 1] - bounds[i]) * allocation // BUCKETS)
        for i in range(len(units))
    ]


# --- operands (section 5) ------------------------------------------------------------------------

_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_NUM = r"0|[1-9][0-9]*"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    rf"({_NUM})\.({_NUM})\.({_NUM})(?:-({_PRE_ID}(?:\.{_PRE_ID})*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_INSTANT = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-][0-9]{2}:[0-9]{2}))?"
)
_BOOL_STRINGS = {"true": True, "false": False}


def as_number(value: Any) -> float | None:
    """A finite float for numbers and decimal strings; None otherwise (booleans too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def semver_key(value: Any) -> tuple | None:
    """A sort key with semver.org 2.0.0 precedence (build metadata ignored); None if invalid."""
    if not isinstance(value, str):
        return None
    match = _SEMVER.fullmatch(value)
    if match is None:
        return None
    core = tuple((len(p), p) for p in match.group(1, 2, 3))
    pre = match.group(4)
    if pre is None:
        return (core, (1,))
    ids = tuple((0, len(i), i) if i.isdigit() else (1, 0, i) for i in pre.split("."))
    return (core, (0, ids))


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 else 28
    return 30 if month in (4, 6, 9, 11) else 31


def instant_key(value: Any) -> tuple[int, int] | None:
    """(epoch seconds, nanoseconds) of an ISO 8601 date or offset timestamp; None otherwise."""
    if not isinstance(value, str):
        return None
    match = _INSTANT.fullmatch(value)
    if match is None:
        return None
    year, month, day = (int(g) for g in match.group(1, 2, 3))
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    hour, minute, second = (int(g or 0) for g in match.group(4, 5, 6))
    if hour > 23 or minute > 59 or second > 59:
        return None
    offset = 0
    zone = match.group(8)
    if zone and zone != "Z":
        oh, om = int(zone[1:3]), int(zone[4:6])
        if oh > 23 or om > 59:
            return None
        offset = (oh * 3600 + om * 60) * (1 if zone[0] == "+" else -1)
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
    return (seconds, int((match.group(7) or "").ljust(9, "0")))


def same(attribute: Any, value: Any) -> bool:
    """Equality of section 5: booleans only with booleans (or "true"/"false"), numeric strings."""
    if isinstance(attribute, bool) or isinstance(value, bool):
        left = _BOOL_STRINGS.get(attribute) if isinstance(attribute, str) else attribute
        right = _BOOL_STRINGS.get(value) if isinstance(value, str) else value
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if isinstance(attribute, str) and isinstance(value, str):
        return attribute == value
    left, right = as_number(attribute), as_number(value)
    return left is not None and right is not None and left == right


# --- targeting -----------------------------------------------------------------------------------

Check = Callable[[Mapping[str, Any]], "str | None"]
_ORDERED: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], bool]]] = {
    "gt": (as_number, _op.gt), "gte": (as_number, _op.ge),
    "lt": (as_number, _op.lt), "lte": (as_number, _op.le),
    "semver_eq": (semver_key, _op.eq), "semver_gt": (semver_key, _op.gt),
    "semver_gte": (semver_key, _op.ge), "semver_lt": (semver_key, _op.lt),
    "semver_lte": (semver_key, _op.le),
    "before": (instant_key, _op.lt), "after": (instant_key, _op.gt),
}


def compile_rule(rule: Mapping[str, Any]) -> Check:
    """One rule -> a check returning None when it passes, else why it failed."""
    name = str(rule.get("attribute", ""))
    operator = rule.get("operator")
    values = list(rule.get("values") or [])
    first = values[0] if values else None
    failed = f"{name} fails {operator}"

    if operator == "exists":
        return lambda attrs: None if attrs.get(name) is not None else failed
    if operator == "not_exists":
        return lambda attrs: None if attrs.get(name) is None else failed
    if operator in ("equals", "not_equals", "in", "not_in"):
        candidates = [first] if operator in ("equals", "not_equals") else values
        strings = frozenset(v for v in candidates if isinstance(v, str))
        only_strings = len(strings) == len(candidates)
        negate = operator in ("not_equals", "not_in")

        def check_equal(attrs: Mapping[str, Any]) -> str | None:
            value = attrs.get(name)
            if value is None:
                return failed
            if only_strings and isinstance(value, str):
                hit = value in strings
            else:
                hit = any(same(value, c) for c in candidates)
            return failed if hit is negate else None
        return check_equal
    if operator in _ORDERED:
        key, compare = _ORDERED[operator]
        bound = key(first)

        def check_ordered(attrs: Mapping[str, Any]) -> str | None:
            value = attrs.get(name)
            if value is None or bound is None:
                return failed
            value_key = key(value)
            return None if value_key is not None and compare(value_key, bound) else failed
        return check_ordered
    if operator == "contains":
        def check_contains(attrs: Mapping[str, Any]) -> str | None:
            value = attrs.get(name)
            ok = isinstance(value, str) and isinstance(first, str) and first in value
            return None if ok else failed
        return check_contains
    return lambda attrs: f"unknown operator {operator!r}"


def rule_passes(rule: Mapping[str, Any], attributes: Mapping[str, Any]) -> bool:
    return compile_rule(rule)(attributes) is None


# --- the evaluator (sections 3, 4, 6, 7) ---------------------------------------------------------

class _Experiment:
    __slots__ = (
        "key", "status", "running", "phase", "bucketer", "ranges", "control", "variants",
        "checks", "layer", "layer_start", "layer_end", "overrides", "override_salt",
        "hashed_overrides", "fixed",
    )

    def __init__(self, spec: Mapping[str, Any], layers: Mapping[str, tuple], audiences: Any = None) -> None:
        try:
            self.key = str(spec["key"])
            self.status = str(spec["status"])
            variants = list(spec.get("variants") or [])
            self.variants = {str(v["key"]): (v.get("payload") or {}) for v in variants}
        except (KeyError, TypeError, AttributeError) as exc:
            raise DocumentError(f"experiment entry is malformed: {exc!r}") from exc
        self.running = self.status == "running"
        self.phase = spec.get("phase")
        self.bucketer = _bucketer("exp", str(spec.get("salt") or self.key))
        control = next((v for v in variants if v.get("is_control")), variants[0] if variants else None)
        self.control = (str(control["key"]), control.get("payload") or {}) if control else (None, {})
        bounds = variant_ranges([v.get("weight", 0) for v in variants], spec.get("traffic_allocation", 100))
        self.ranges = tuple(
            (bounds[i][0], bounds[i][1], str(variants[i]["key"]), variants[i].get("payload") or {})
            for i in range(len(variants)) if bounds[i][1] > bounds[i][0]
        )
        self.checks = tuple(compile_rule(r) for r in spec.get("targeting") or [])
        if spec.get("audiences") and audiences is not None:  # section 5a: like targeting rules
            self.checks += audiences.checks(spec["audiences"])
        self.layer = None
        self.layer_start = self.layer_end = 0
        layer_key = spec.get("layer")
        if layer_key is not None:
            if layer_key not in layers:
                raise DocumentError(f"experiment {self.key!r} names unknown layer {layer_key!r}")
            self.layer = layers[layer_key]
            layer_range = spec.get("layer_range")
            if layer_range:
                self.layer_start, self.layer_end = int(layer_range[0]), int(layer_range[1])
        self.overrides = {
            str(u): str(v) for u, v in (spec.get("overrides") or {}).items() if str(v) in self.variants
        }
        self.override_salt = str(spec.get("override_salt") or "")
        self.hashed_overrides = {
            str(h): str(v) for h, v in (spec.get("hashed_overrides") or {}).items()
            if str(v) in self.variants
        }
        self.fixed = None
        shipped = spec.get("shipped_variant")
        if shipped is not None and self.status in _SHIPPABLE and str(shipped) in self.variants:
            self.fixed = Assignment(self.key, str(shipped), False, SHIPPED,
                                    f"experiment is {self.status}", self.variants[str(shipped)])
        elif spec.get("enabled", True) is False:
            self.fixed = Assignment(self.key, self.control[0], False, DISABLED_IN_ENVIRONMENT,
                                    "experiment is switched off in this environment", self.control[1])
        elif not self.running:
            self.fixed = Assignment(self.key, self.control[0], False, NOT_RUNNING,
                                    f"experiment is {self.status}", self.control[1])

    def _forced(self, unit_id: str) -> str | None:
        if self.overrides:
            forced = self.overrides.get(unit_id)
            if forced is not None:
                return forced
        if self.hashed_overrides:
            return self.hashed_overrides.get(override_hash(self.override_salt, unit_id))
        return None

    def evaluate(self, unit_id: str, attributes: Mapping[str, Any], layer_buckets: dict | None) -> Assignment:
        fixed = self.fixed
        if fixed is not None and self.status not in _OVERRIDABLE:
            return fixed
        if self.overrides or self.hashed_overrides:
            forced = self._forced(unit_id)
            if forced is not None:
                return Assignment(self.key, forced, self.running, OVERRIDE,
                                  f"unit is forced into {forced!r}", self.variants[forced], self.phase)
        if fixed is not None:
            return fixed
        for check in self.checks:
            failure = check(attributes)
            if failure is not None:
                return Assignment(self.key, self.control[0], False, TARGETING, failure, self.control[1])
        layer = self.layer
        if layer is not None:
            key, bucketer, holdout_end = layer
            if layer_buckets is None:
                slot = bucketer(unit_id)
            else:
                slot = layer_buckets.get(key)
                if slot is None:
                    slot = layer_buckets[key] = bucketer(unit_id)
            if slot < holdout_end:
                return Assignment(self.key, self.control[0], False, LAYER_HOLDOUT,
                                  f"unit is in the holdout of layer {key!r}", self.control[1])
            if not self.layer_start <= slot < self.layer_end:
                return Assignment(self.key, self.control[0], False, LAYER_OTHER_EXPERIMENT,
                                  f"unit belongs to another experiment of layer {key!r}", self.control[1])
        b = self.bucketer(unit_id)
        for start, end, variant, payload in self.ranges:
            if start <= b < end:
                return Assignment(self.key, variant, True, ASSIGNED, "unit hashed into variant",
                                  payload, self.phase)
        return Assignment(self.key, self.control[0], False, TRAFFIC_ALLOCATION,
                          "unit is outside the traffic allocation", self.control[1])


class Evaluator:
    """The compiled form of one configuration document (immutable; share it between threads)."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        if not isinstance(document, Mapping):
            raise DocumentError("the document must be a JSON object")
        if document.get("schema_version") != SCHEMA_VERSION:
            raise DocumentError(f"unsupported schema_version {document.get('schema_version')!r}")
        hashing = document.get("hash") or {}
        if hashing.get("algorithm", "sha256") != "sha256" or hashing.get("buckets", BUCKETS) != BUCKETS:
            raise DocumentError("unsupported hash settings")
        experiments = document.get("experiments")
        if not isinstance(experiments, list):
            raise DocumentError("experiments must be a list")
        self.document = document
        self.version: str | None = document.get("version")
        try:
            layers = {
                str(k): (str(k), _bucketer("layer", str(v.get("salt") or k)),
                         percent_to_units(v.get("holdout_percent") or 0))
                for k, v in (document.get("layers") or {}).items()
            }
        except (AttributeError, TypeError, ValueError) as exc:
            raise DocumentError(f"layers are malformed: {exc!r}") from exc
        from .audiences import Audiences  # (late: they build on this module)
        from .flags import FlagEvaluator
        audiences = Audiences(document.get("audiences"))
        self._experiments: dict[str, _Experiment] = {}
        for spec in experiments:
            if not isinstance(spec, Mapping):
                raise DocumentError("experiment entries must be objects")
            try:
                compiled = _Experiment(spec, layers, audiences)
            except (TypeError, ValueError, IndexError) as exc:
                raise DocumentError(f"experiment entry is malformed: {exc!r}") from exc
            self._experiments[compiled.key] = compiled
        self.running_keys = tuple(k for k, e in self._experiments.items() if e.running)
        try:
            self.flags = FlagEvaluator(document.get("flags"), self._experiments, audiences)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise DocumentError(f"flag entry is malformed: {exc!r}") from exc

    def __contains__(self, key: object) -> bool:
        return key in self._experiments

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._experiments)

    def evaluate(self, key: str, unit_id: str, attributes: Mapping[str, Any] | None = None) -> Assignment:
        """The answer for one experiment; an unknown key answers ``unknown_experiment``."""
        experiment = self._experiments.get(key)
        if experiment is None:
            return Assignment(key, None, False, UNKNOWN_EXPERIMENT, "no such experiment", {})
        return experiment.evaluate(unit_id, attributes or {}, None)

    def evaluate_many(self, unit_id: str, attributes: Mapping[str, Any] | None = None,
                      keys: Iterable[str] | None = None) -> list[Assignment]:
        """Answers for ``keys`` (default: every running experiment), one layer hash per layer."""
        attributes = attributes or {}
        layer_buckets: dict[str, int] = {}
        out = []
        for key in self.running_keys if keys is None else keys:
            experiment = self._experiments.get(key)
            if experiment is None:
                out.append(Assignment(key, None, False, UNKNOWN_EXPERIMENT, "no such experiment", {}))
            else:
                out.append(experiment.evaluate(unit_id, attributes, layer_buckets))
        return out
