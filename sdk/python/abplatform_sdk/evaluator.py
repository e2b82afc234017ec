"""Local assignment from the configuration document, per docs/assignment.md (no I/O, no deps).

Everything here is pure computation: ``Evaluator(document).evaluate(key, unit_id, attributes)``
hashes, checks targeting, layers and allocation exactly as the server does, so a local answer
and a server answer never disagree. The test suite checks it against ``assignment/vectors.json``.
"""
from __future__ import annotations

import hashlib
import importlib
import math
import operator as _op
import re
import struct
import sys
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
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
_sha256: Callable[..., Any] = hashlib.sha256
if sys.implementation.name == "cpython":
    # CPython's own SHA-256 (HACL* from 3.12, ``_sha256`` before): the same digest without an
    # OpenSSL context allocated and freed per unit, about 10 % faster per evaluation here.
    # Any other interpreter, or a build without it, keeps hashlib's.
    for _module in ("_sha2", "_sha256"):
        try:
            _sha256 = importlib.import_module(_module).sha256
        except (ImportError, AttributeError):
            continue
        break
_from_bytes = int.from_bytes
_unpack_u64 = struct.Struct(">Q").unpack_from  # the first 8 bytes of a digest, big-endian


class DocumentError(ValueError):
    """The configuration document is malformed or of an unsupported schema."""


class Assignment:
    """One answer, frozen: the evaluator hands the same object to every unit that gets the same
    answer (it names no unit), so nothing may change it. ``payload`` is shared as well: treat
    it as read-only."""

    __slots__ = ("experiment", "variant", "in_experiment", "reason", "detail", "payload", "phase")

    def __init__(self, experiment: str, variant: str | None, in_experiment: bool, reason: str,
                 detail: str, payload: Any, phase: int | None = None) -> None:
        init = object.__setattr__
        init(self, "experiment", experiment)
        init(self, "variant", variant)
        init(self, "in_experiment", in_experiment)
        init(self, "reason", reason)
        init(self, "detail", detail)
        init(self, "payload", payload)
        init(self, "phase", phase)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Assignment is frozen (shared between calls); cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Assignment is frozen (shared between calls); cannot delete {name!r}")

    def __reduce__(self) -> tuple:
        return (Assignment, (self.experiment, self.variant, self.in_experiment, self.reason,
                             self.detail, self.payload, self.phase))

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
    copy = _sha256(f"{namespace}:{salt}:".encode()).copy  # resume after the prefix
    unpack = _unpack_u64

    def _bucket(unit_id: str) -> int:
        h = copy()
        h.update(unit_id.encode())
        return unpack(h.digest())[0] % BUCKETS

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
#
# Speed: everything that does not depend on the unit is computed once per experiment when the
# document is compiled. Every possible answer except a targeting failure detail is a shared,
# frozen Assignment (the assigned answer of each variant too: it names no unit), the variant
# ranges become a sorted list of edges looked up with bisect (the gaps of a partial traffic
# allocation are segments answering traffic_allocation), and the common experiment (no
# override, no layer) is one closure: targeting checks, one SHA-256 of a prebuilt prefix, one
# lookup. Nothing is allocated per call on that path.

Assigner = Callable[..., Assignment]
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _segments(ranges: Iterable[tuple[int, int, Assignment]], outside: Assignment
              ) -> tuple[list[int], tuple[Assignment, ...]]:
    """Edges and answers so that ``answers[bisect_right(edges, b)]`` is the answer of bucket b."""
    edges: list[int] = []
    answers: list[Assignment] = []
    position = 0
    for start, end, answer in sorted(ranges, key=lambda r: r[0]):
        if start > position:  # a gap: outside the traffic allocation
            if answers:
                edges.append(position)
            answers.append(outside)
        if answers:
            edges.append(start)
        answers.append(answer)
        position = end
    if position < BUCKETS or not answers:
        if answers:
            edges.append(position)
        answers.append(outside)
    return edges, tuple(answers)


def _lookup(edges: list[int], answers: tuple[Assignment, ...]) -> tuple[int, tuple[Assignment, ...]] | None:
    """``(step, table)`` with ``table[b // step]`` the answer of bucket b, when every edge is a
    multiple of a step giving a small table (50/50: step 5,000, two entries); else None."""
    step = math.gcd(BUCKETS, *edges)
    if BUCKETS // step > 1_000:
        return None
    table = tuple(answers[bisect_right(edges, b)] for b in range(0, BUCKETS, step))
    return step, table


def _assigner(prefix: bytes, edges: list[int], answers: tuple[Assignment, ...],
              checks: tuple[Check, ...], targeting: Callable[[str], Assignment],
              layer: tuple | None = None) -> Assigner:
    """``(unit_id, attributes=None) -> Assignment`` for a running experiment without overrides:
    the targeting checks, the layer slot if any, then the bucket of ``exp:<salt>:<unit_id>``
    (SHA-256 resumed from a hash object that has already taken the prefix)."""
    if not edges and not checks and layer is None:  # one answer for every unit
        [only] = answers
        return lambda unit_id, attributes=None: only
    copy, unpack, empty = _sha256(prefix).copy, _unpack_u64, _EMPTY
    layer_copy = holdout_end = layer_start = layer_end = holdout = other = None
    if layer is not None:
        layer_prefix, holdout_end, layer_start, layer_end, holdout, other = layer
        layer_copy = _sha256(layer_prefix).copy
    lookup = _lookup(edges, answers)
    if lookup is not None:
        step, table = lookup

        def assign_table(unit_id: str, attributes: Mapping[str, Any] | None = None) -> Assignment:
            if checks:
                for check in checks:
                    failure = check(empty if attributes is None else attributes)
                    if failure is not None:
                        return targeting(failure)
            data = unit_id.encode()
            if layer_copy is not None:
                h = layer_copy()
                h.update(data)
                slot = unpack(h.digest())[0] % BUCKETS
                if slot < holdout_end:
                    return holdout
                if not layer_start <= slot < layer_end:
                    return other
            h = copy()
            h.update(data)
            return table[unpack(h.digest())[0] % BUCKETS // step]
        return assign_table
    bisect = bisect_right

    def assign_bisect(unit_id: str, attributes: Mapping[str, Any] | None = None) -> Assignment:
        if checks:
            for check in checks:
                failure = check(empty if attributes is None else attributes)
                if failure is not None:
                    return targeting(failure)
        data = unit_id.encode()
        if layer_copy is not None:
            h = layer_copy()
            h.update(data)
            slot = unpack(h.digest())[0] % BUCKETS
            if slot < holdout_end:
                return holdout
            if not layer_start <= slot < layer_end:
                return other
        h = copy()
        h.update(data)
        return answers[bisect(edges, unpack(h.digest())[0] % BUCKETS)]
    return assign_bisect


def _targeting_answers(key: str, control: tuple[str | None, Any]) -> Callable[[str], Assignment]:
    """The ``targeting`` answer of one experiment for a failure detail, built once per detail
    (a rule's detail does not depend on the unit, so the cache stays small; capped anyway)."""
    cache: dict[str, Assignment] = {}

    def answer(failure: str) -> Assignment:
        hit = cache.get(failure)
        if hit is None:
            hit = Assignment(key, control[0], False, TARGETING, failure, control[1])
            if len(cache) < 64:
                cache[failure] = hit
        return hit

    return answer


class _Experiment:
    __slots__ = (
        "key", "status", "running", "phase", "bucketer", "ranges", "control", "variants",
        "checks", "layer", "layer_start", "layer_end", "overrides", "override_salt",
        "hashed_overrides", "fixed", "prefix", "edges", "answers", "forced", "targeting",
        "holdout", "other_experiment", "assign",
    )

    def __init__(self, spec: Mapping[str, Any], layers: Mapping[str, tuple], audiences: Any = None) -> None:
        try:
            self.key = str(spec["key"])
            self.status = str(spec["status"])
            variants = list(spec.get("variants") or [])
            self.variants = {str(v["key"]): (v.get("payload") or {}) for v in variants}
        except (KeyError, TypeError, AttributeError) as exc:
            raise DocumentError(f"experiment entry is malformed: {exc!r}") from exc
        key = self.key
        self.running = self.status == "running"
        self.phase = spec.get("phase")
        salt = str(spec.get("salt") or key)
        self.bucketer = _bucketer("exp", salt)
        self.prefix = f"exp:{salt}:".encode()
        control = next((v for v in variants if v.get("is_control")), variants[0] if variants else None)
        self.control = (str(control["key"]), control.get("payload") or {}) if control else (None, {})
        bounds = variant_ranges([v.get("weight", 0) for v in variants], spec.get("traffic_allocation", 100))
        self.ranges = tuple(
            (bounds[i][0], bounds[i][1], str(variants[i]["key"]), variants[i].get("payload") or {})
            for i in range(len(variants)) if bounds[i][1] > bounds[i][0]
        )
        outside = self._fallback(TRAFFIC_ALLOCATION, "unit is outside the traffic allocation")
        self.edges, self.answers = _segments(
            ((start, end, Assignment(key, variant, True, ASSIGNED, "unit hashed into variant",
                                     payload, self.phase))
             for start, end, variant, payload in self.ranges), outside)
        self.checks = tuple(compile_rule(r) for r in spec.get("targeting") or [])
        if spec.get("audiences") and audiences is not None:  # section 5a: like targeting rules
            self.checks += audiences.checks(spec["audiences"])
        self.targeting = _targeting_answers(key, self.control)
        self.layer = None
        self.layer_start = self.layer_end = 0
        self.holdout = self.other_experiment = None
        layer_key = spec.get("layer")
        if layer_key is not None:
            if layer_key not in layers:
                raise DocumentError(f"experiment {key!r} names unknown layer {layer_key!r}")
            self.layer = layers[layer_key]
            layer_range = spec.get("layer_range")
            if layer_range:
                self.layer_start, self.layer_end = int(layer_range[0]), int(layer_range[1])
            self.holdout = self._fallback(LAYER_HOLDOUT, f"unit is in the holdout of layer {layer_key!r}")
            self.other_experiment = self._fallback(
                LAYER_OTHER_EXPERIMENT, f"unit belongs to another experiment of layer {layer_key!r}")
        self.overrides = {
            str(u): str(v) for u, v in (spec.get("overrides") or {}).items() if str(v) in self.variants
        }
        self.override_salt = str(spec.get("override_salt") or "")
        self.hashed_overrides = {
            str(h): str(v) for h, v in (spec.get("hashed_overrides") or {}).items()
            if str(v) in self.variants
        }
        self.forced = {
            v: Assignment(key, v, self.running, OVERRIDE, f"unit is forced into {v!r}",
                          self.variants[v], self.phase)
            for v in {*self.overrides.values(), *self.hashed_overrides.values()}
        }
        self.fixed = None
        shipped = spec.get("shipped_variant")
        if shipped is not None and self.status in _SHIPPABLE and str(shipped) in self.variants:
            self.fixed = Assignment(key, str(shipped), False, SHIPPED,
                                    f"experiment is {self.status}", self.variants[str(shipped)])
        elif spec.get("enabled", True) is False:
            self.fixed = Assignment(self.key, self.control[0], False, DISABLED_IN_ENVIRONMENT,
                                    "experiment is switched off in this environment", self.control[1])
        elif not self.running:
            self.fixed = Assignment(key, self.control[0], False, NOT_RUNNING,
                                    f"experiment is {self.status}", self.control[1])
        self.assign = self._compile()

    def _fallback(self, reason: str, detail: str) -> Assignment:
        return Assignment(self.key, self.control[0], False, reason, detail, self.control[1])

    def _compile(self) -> Assigner:
        """The fastest ``(unit_id, attributes=None) -> Assignment`` for this experiment."""
        fixed = self.fixed
        if fixed is not None and (self.status not in _OVERRIDABLE
                                  or not (self.overrides or self.hashed_overrides)):
            return lambda unit_id, attributes=None: fixed
        if fixed is None and not (self.overrides or self.hashed_overrides):
            layer = None
            if self.layer is not None:
                layer = (self.layer[3], self.layer[2], self.layer_start, self.layer_end,
                         self.holdout, self.other_experiment)
            return _assigner(self.prefix, self.edges, self.answers, self.checks, self.targeting, layer)
        general = self.evaluate
        return lambda unit_id, attributes=None: general(unit_id, _EMPTY if attributes is None else attributes, None)

    def _forced(self, unit_id: str) -> str | None:
        if self.overrides:
            forced = self.overrides.get(unit_id)
            if forced is not None:
                return forced
        if self.hashed_overrides:
            return self.hashed_overrides.get(override_hash(self.override_salt, unit_id))
        return None

    def evaluate(self, unit_id: str, attributes: Mapping[str, Any], layer_buckets: dict | None) -> Assignment:
        """Every case, in the order of section 6 (``assign`` is the compiled shortcut)."""
        fixed = self.fixed
        if fixed is not None and self.status not in _OVERRIDABLE:
            return fixed
        if self.overrides or self.hashed_overrides:
            forced = self._forced(unit_id)
            if forced is not None:
                return self.forced[forced]
        if fixed is not None:
            return fixed
        for check in self.checks:
            failure = check(attributes)
            if failure is not None:
                return self.targeting(failure)
        layer = self.layer
        if layer is not None:
            key, bucketer, holdout_end, _ = layer
            if layer_buckets is None:
                slot = bucketer(unit_id)
            else:
                slot = layer_buckets.get(key)
                if slot is None:
                    slot = layer_buckets[key] = bucketer(unit_id)
            if slot < holdout_end:
                return self.holdout
            if not self.layer_start <= slot < self.layer_end:
                return self.other_experiment
        return self.answers[bisect_right(self.edges, self.bucketer(unit_id))]


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
                         percent_to_units(v.get("holdout_percent") or 0),
                         f"layer:{v.get('salt') or k}:".encode())
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
        #: key -> ``(unit_id, attributes=None) -> Assignment``: the hot path of ``evaluate`` and
        #: of ``Client.assign`` (one dict lookup, one call).
        self._assigners: dict[str, Assigner] = {k: e.assign for k, e in self._experiments.items()}

    def __contains__(self, key: object) -> bool:
        return key in self._experiments

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._experiments)

    def evaluate(self, key: str, unit_id: str, attributes: Mapping[str, Any] | None = None) -> Assignment:
        """The answer for one experiment; an unknown key answers ``unknown_experiment``.

        The answer may be shared with other calls (it is frozen): it names no unit."""
        assign = self._assigners.get(key)
        if assign is None:
            return Assignment(key, None, False, UNKNOWN_EXPERIMENT, "no such experiment", {})
        return assign(unit_id, attributes)

    def evaluate_many(self, unit_id: str, attributes: Mapping[str, Any] | None = None,
                      keys: Iterable[str] | None = None) -> list[Assignment]:
        """Answers for ``keys`` (default: every running experiment), one layer hash per layer."""
        attributes = _EMPTY if attributes is None else attributes
        layer_buckets: dict[str, int] = {}
        out = []
        for key in self.running_keys if keys is None else keys:
            experiment = self._experiments.get(key)
            if experiment is None:
                out.append(Assignment(key, None, False, UNKNOWN_EXPERIMENT, "no such experiment", {}))
            elif experiment.layer is None:
                out.append(experiment.assign(unit_id, attributes))
            else:
                out.append(experiment.evaluate(unit_id, attributes, layer_buckets))
        return out
