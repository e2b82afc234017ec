"""A deliberately naive, line-by-line transcription of docs/assignment.md.

It shares no code with ``assignment/``: if the spec and the implementation drift apart, the
vector tests that run both disagree. Keep it as literal as the document.
"""
from __future__ import annotations

import hashlib
import math
import re


def ref_bucket(namespace, salt, unit_id):
    data = (namespace + ":" + salt + ":" + unit_id).encode("utf-8")
    digest = hashlib.sha256(data).digest()
    value = 0
    for byte in digest[:8]:
        value = value * 256 + byte
    return value % 10000


def ref_units(percent):
    return max(0, min(10000, math.floor(percent * 100 + 0.5 + 1e-9)))


def ref_ranges(weights, allocation):
    w = [ref_units(x) for x in weights]
    total = sum(w)
    a = ref_units(allocation)
    result = []
    cumulative = 0
    for wi in w:
        b_start = (10000 * cumulative) // total
        cumulative += wi
        b_end = (10000 * cumulative) // total
        result.append((b_start, b_start + ((b_end - b_start) * a) // 10000))
    return result


NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


def ref_number(v):
    if v is True or v is False:
        return None
    if isinstance(v, (int, float)) or (isinstance(v, str) and NUMBER.match(v)):
        try:
            number = float(v)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def ref_equal(a, v):
    if isinstance(a, bool) or isinstance(v, bool):
        def as_bool(x):
            if isinstance(x, bool):
                return x
            return {"true": True, "false": False}.get(x) if isinstance(x, str) else None
        return as_bool(a) is not None and as_bool(a) == as_bool(v)
    if isinstance(a, str) and isinstance(v, str):
        return a == v
    na, nv = ref_number(a), ref_number(v)
    return na is not None and nv is not None and na == nv


def ref_rule(rule, attributes):
    a = attributes.get(rule["attribute"])
    op, values = rule["operator"], rule.get("values") or []
    if op == "not_exists":
        return a is None
    if a is None:
        return False
    if op == "exists":
        return True
    if op == "equals":
        return ref_equal(a, values[0])
    if op == "not_equals":
        return not ref_equal(a, values[0])
    if op == "in":
        return any(ref_equal(a, v) for v in values)
    if op == "not_in":
        return not any(ref_equal(a, v) for v in values)
    if op in ("gt", "gte", "lt", "lte"):
        na, nv = ref_number(a), ref_number(values[0])
        if na is None or nv is None:
            return False
        return {"gt": na > nv, "gte": na >= nv, "lt": na < nv, "lte": na <= nv}[op]
    if op == "contains":
        return isinstance(a, str) and isinstance(values[0], str) and values[0] in a
    if op.startswith("semver_"):
        c = ref_semver_compare(a, values[0])
        if c is None:
            return False
        return {"semver_eq": c == 0, "semver_gt": c > 0, "semver_gte": c >= 0, "semver_lt": c < 0,
                "semver_lte": c <= 0}[op]
    if op in ("before", "after"):
        ta, tv = ref_instant(a), ref_instant(values[0])
        if ta is None or tv is None:
            return False
        return ta < tv if op == "before" else ta > tv
    return False


# Semantic versions, transcribed from docs/assignment.md section 5 (split-based, no shared regex).
SEMVER_TEXT = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$",
    re.ASCII,
)


def _cmp(x, y):
    return (x > y) - (x < y)


def ref_semver_compare(a, b):
    """-1, 0, 1 by semver precedence, or None when either side is not a semantic version."""
    if not isinstance(a, str) or not isinstance(b, str) or "\n" in a + b:
        return None
    ma, mb = SEMVER_TEXT.match(a), SEMVER_TEXT.match(b)
    if not ma or not mb:
        return None
    for x, y in zip(ma.group(1, 2, 3), mb.group(1, 2, 3), strict=True):
        if int(x) != int(y):
            return _cmp(int(x), int(y))
    pa, pb = ma.group(4), mb.group(4)
    if pa is None or pb is None:
        return _cmp(pa is None, pb is None)
    ia, ib = pa.split("."), pb.split(".")
    for x, y in zip(ia, ib, strict=False):
        if x.isdigit() and y.isdigit():
            c = _cmp(int(x), int(y))
        elif x.isdigit() != y.isdigit():
            c = -1 if x.isdigit() else 1
        else:
            c = _cmp(x.encode("ascii"), y.encode("ascii"))
        if c:
            return c
    return _cmp(len(ia), len(ib))


DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
TIMESTAMP_TEXT = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$", re.ASCII)


def ref_instant(v):
    """Nanoseconds since the epoch via the standard library's calendar, or None."""
    from datetime import UTC, datetime, timedelta

    if not isinstance(v, str) or "\n" in v:
        return None
    try:
        if DATE_TEXT.match(v):
            moment, nanos = datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=UTC), 0
        else:
            m = TIMESTAMP_TEXT.match(v)
            if not m:
                return None
            fmt = "%Y-%m-%dT%H:%M:%S" if m.group(1).count(":") == 2 else "%Y-%m-%dT%H:%M"
            moment = datetime.strptime(m.group(1), fmt)
            zone = m.group(3)
            if zone == "Z":
                offset = timedelta(0)
            else:
                hours, minutes = int(zone[1:3]), int(zone[4:6])
                if hours > 23 or minutes > 59:
                    return None
                offset = timedelta(hours=hours, minutes=minutes) * (1 if zone[0] == "+" else -1)
            moment = moment.replace(tzinfo=UTC) - offset
            nanos = int((m.group(2) or "0").ljust(9, "0"))
    except ValueError:
        return None
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    delta = moment - epoch
    return (delta.days * 86400 + delta.seconds) * 10**9 + nanos


def ref_assign(document, key, unit_id, attributes):
    """-> (variant, in_experiment, reason)"""
    exp = next(e for e in document["experiments"] if e["key"] == key)
    variants = exp["variants"]
    control = next((v for v in variants if v["is_control"]), variants[0])["key"]
    keys = [v["key"] for v in variants]
    status = exp["status"]
    if status in ("completed", "archived") and exp.get("shipped_variant") in keys:
        return exp["shipped_variant"], False, "shipped"
    if status in ("draft", "running", "paused") and exp["overrides"].get(unit_id) in keys:
        return exp["overrides"][unit_id], status == "running", "override"
    if exp.get("enabled", True) is False:
        return control, False, "disabled_in_environment"
    if status != "running":
        return control, False, "not_running"
    for rule in exp["targeting"]:
        if not ref_rule(rule, attributes):
            return control, False, "targeting"
    for name in exp.get("audiences", []):
        if not ref_member(document, name, attributes):
            return control, False, "targeting"
    if exp["layer"] is not None:
        layer = document["layers"][exp["layer"]]
        lb = ref_bucket("layer", layer["salt"], unit_id)
        if lb < ref_units(layer["holdout_percent"]):
            return control, False, "layer_holdout"
        r = exp["layer_range"]
        if r is None or not (r[0] <= lb < r[1]):
            return control, False, "layer_other_experiment"
    b = ref_bucket("exp", exp["salt"], unit_id)
    ranges = ref_ranges([v["weight"] for v in variants], exp["traffic_allocation"])
    for (start, end), v in zip(ranges, variants, strict=True):
        if start <= b < end:
            return v["key"], True, "assigned"
    return control, False, "traffic_allocation"


def ref_override_hash(salt, unit_id):
    return hashlib.sha256(("override:" + salt + ":" + unit_id).encode("utf-8")).hexdigest()


def ref_member(document, name, attributes):
    """Section 5a: all / any of the conditions; no conditions: everyone; undefined: nobody."""
    audience = document.get("audiences", {}).get(name)
    if audience is None:
        return False
    conditions = audience["conditions"]
    if not conditions:
        return True
    results = [ref_rule(c, attributes) for c in conditions]
    return all(results) if audience["match"] == "all" else any(results)


def ref_flag(document, key, unit_id, attributes):
    """Section 6a -> (value, reason, rule_id, variant); ``None`` value for an unknown flag."""
    flag = next((f for f in document.get("flags", []) if f["key"] == key), None)
    if flag is None:
        return None, "unknown_flag", None, None
    if flag["enabled"] is False:
        return flag["default"], "disabled", None, None
    for rule in flag["rules"]:
        kind = rule["type"]
        if kind == "force":
            if all(ref_member(document, a, attributes) for a in rule["audiences"]):
                return rule["value"], "force", rule["id"], None
        elif kind == "units":
            if unit_id in rule["units"]:
                return rule["units"][unit_id], "units", rule["id"], None
            hashed = rule["hashed_units"]
            if hashed and ref_override_hash(flag["unit_salt"], unit_id) in hashed:
                return hashed[ref_override_hash(flag["unit_salt"], unit_id)], "units", rule["id"], None
        elif kind == "rollout":
            member = all(ref_member(document, a, attributes) for a in rule["audiences"])
            if member and ref_bucket("flag", rule["salt"], unit_id) < ref_units(rule["percent"]):
                return rule["value"], "rollout", rule["id"], None
        elif kind == "experiment" and any(e["key"] == rule["experiment"] for e in document["experiments"]):
            variant, in_experiment, _ = ref_assign_hashed(document, rule["experiment"], unit_id, attributes)
            if in_experiment and variant in rule["values"]:
                return rule["values"][variant], "experiment", rule["id"], variant
    return flag["default"], "default", None, None


def ref_assign_hashed(document, key, unit_id, attributes):
    """``ref_assign`` for either document: the client document names override units by hash."""
    exp = next(e for e in document["experiments"] if e["key"] == key)
    hashed = exp.get("hashed_overrides") or {}
    h = ref_override_hash(exp.get("override_salt", ""), unit_id)
    if hashed and unit_id not in exp["overrides"] and h in hashed:
        exp = {**exp, "overrides": {unit_id: hashed[h]}}
        document = {**document, "experiments": [exp]}
    return ref_assign(document, key, unit_id, attributes)
