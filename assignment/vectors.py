"""Build the language-neutral test vectors in ``assignment/vectors.json``.

Run ``python -m assignment.vectors`` after an *intended* change of the algorithm (which is a
breaking change for every SDK: bump ``schema_version``). Tests check the committed file against
this evaluator and against an independent transcription of docs/assignment.md.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .clientdoc import client_document, override_hash
from .evaluator import Evaluator, variant_ranges
from .flags import FLAG_REASONS, RULE_TYPES
from .hashing import BUCKETS, bucket, experiment_bucket, hash_input, layer_bucket
from .targeting import matches

PATH = Path(__file__).with_name("vectors.json")

DOCUMENT: dict[str, Any] = {
    "schema_version": 1,
    "version": "vectors",
    "generated_at": "2026-01-01T00:00:00Z",
    "hash": {"algorithm": "sha256", "buckets": BUCKETS},
    "layers": {
        "checkout": {"salt": "checkout-layer", "holdout_percent": 5.0},
        "search": {"salt": "search", "holdout_percent": 0.0},
    },
    "experiments": [
        {
            "key": "checkout-button", "status": "running", "salt": "checkout-button",
            "traffic_allocation": 100.0, "layer": "checkout", "layer_range": [500, 5500],
            "variants": [
                {"key": "control", "weight": 50.0, "is_control": True, "payload": {}},
                {"key": "green", "weight": 50.0, "is_control": False, "payload": {"color": "green"}},
            ],
            "targeting": [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}],
            "overrides": {"qa-user-1": "green"}, "shipped_variant": None,
        },
        {
            "key": "checkout-copy", "status": "running", "salt": "checkout-copy",
            "traffic_allocation": 60.0, "layer": "checkout", "layer_range": [5500, 10000],
            "variants": [
                {"key": "control", "weight": 50.0, "is_control": True, "payload": {"copy": "Buy"}},
                {"key": "urgent", "weight": 50.0, "is_control": False, "payload": {"copy": "Buy now"}},
            ],
            "targeting": [], "overrides": {}, "shipped_variant": None,
        },
        {
            "key": "ranking-v2", "status": "running", "salt": "ranking-v2",
            "traffic_allocation": 20.0, "layer": "search", "layer_range": [0, 10000],
            "variants": [
                {"key": "a", "weight": 33.33, "is_control": True, "payload": {"model": "a"}},
                {"key": "b", "weight": 33.33, "is_control": False, "payload": {"model": "b"}},
                {"key": "c", "weight": 33.34, "is_control": False, "payload": {"model": "c"}},
            ],
            "targeting": [
                {"attribute": "age", "operator": "gte", "values": [18]},
                {"attribute": "platform", "operator": "not_equals", "values": ["web"]},
                {"attribute": "beta", "operator": "equals", "values": [True]},
            ],
            "overrides": {}, "shipped_variant": None,
        },
        {
            "key": "free-shipping", "status": "running", "salt": "Free Shipping 2026 ünï",
            "traffic_allocation": 100.0, "layer": None, "layer_range": None,
            "variants": [
                {"key": "off", "weight": 90.0, "is_control": True, "payload": {"threshold": None}},
                {"key": "on", "weight": 10.0, "is_control": False, "payload": {"threshold": 25}},
            ],
            "targeting": [
                {"attribute": "email", "operator": "contains", "values": ["@"]},
                {"attribute": "banned", "operator": "not_exists", "values": []},
            ],
            "overrides": {}, "shipped_variant": None,
        },
        {
            # Phase 2 was started with re-randomisation: the salt became "<key>.phase2".
            "key": "reshuffled", "status": "running", "phase": 2, "salt": "reshuffled.phase2",
            "traffic_allocation": 100.0, "layer": None, "layer_range": None,
            "variants": [
                {"key": "control", "weight": 50.0, "is_control": True, "payload": {}},
                {"key": "treatment", "weight": 50.0, "is_control": False, "payload": {"t": 1}},
            ],
            "targeting": [], "overrides": {}, "shipped_variant": None,
        },
        {
            "key": "paused-test", "status": "paused", "salt": "paused-test",
            "traffic_allocation": 100.0, "layer": None, "layer_range": None,
            "variants": [
                {"key": "control", "weight": 50.0, "is_control": True, "payload": {"v": 0}},
                {"key": "treatment", "weight": 50.0, "is_control": False, "payload": {"v": 1}},
            ],
            "targeting": [], "overrides": {"qa-user-2": "treatment"}, "shipped_variant": None,
        },
        {
            "key": "draft-test", "status": "draft", "salt": "draft-test",
            "traffic_allocation": 100.0, "layer": None, "layer_range": None,
            "variants": [
                {"key": "control", "weight": 50.0, "is_control": True, "payload": {}},
                {"key": "new", "weight": 50.0, "is_control": False, "payload": {"new": True}},
            ],
            "targeting": [], "overrides": {"qa-user-1": "new"}, "shipped_variant": None,
        },
        {
            "key": "shipped-test", "status": "completed", "salt": "shipped-test",
            "traffic_allocation": 100.0, "layer": None, "layer_range": None,
            "variants": [
                {"key": "control", "weight": 50.0, "is_control": True, "payload": {"size": "s"}},
                {"key": "big", "weight": 50.0, "is_control": False, "payload": {"size": "xl"}},
            ],
            "targeting": [], "overrides": {"qa-user-1": "control"}, "shipped_variant": "big",
        },
        {
            "key": "archived-test", "status": "archived", "salt": "archived-test",
            "traffic_allocation": 100.0, "layer": None, "layer_range": None,
            "variants": [
                {"key": "control", "weight": 50.0, "is_control": True, "payload": {"x": 1}},
                {"key": "b", "weight": 50.0, "is_control": False, "payload": {"x": 2}},
            ],
            "targeting": [], "overrides": {}, "shipped_variant": None,
        },
    ],
}

# Audiences and per-environment switches (section 5a and row 2a of section 6): additive, so the
# experiments above keep every answer they had before they existed.
DOCUMENT["experiments"] += [
    {
        "key": "eu-promo", "status": "running", "salt": "eu-promo", "audiences": ["eu", "adults"],
        "traffic_allocation": 100.0, "layer": None, "layer_range": None,
        "variants": [
            {"key": "control", "weight": 50.0, "is_control": True, "payload": {}},
            {"key": "promo", "weight": 50.0, "is_control": False, "payload": {"banner": "EU"}},
        ],
        "targeting": [{"attribute": "email", "operator": "exists", "values": []}],
        "overrides": {}, "shipped_variant": None,
    },
    {
        "key": "ghost-audience", "status": "running", "salt": "ghost-audience",
        "audiences": ["no-such-audience"],
        "traffic_allocation": 100.0, "layer": None, "layer_range": None,
        "variants": [
            {"key": "control", "weight": 50.0, "is_control": True, "payload": {}},
            {"key": "b", "weight": 50.0, "is_control": False, "payload": {"b": True}},
        ],
        "targeting": [], "overrides": {}, "shipped_variant": None,
    },
    {
        "key": "disabled-test", "status": "running", "salt": "disabled-test", "enabled": False,
        "traffic_allocation": 100.0, "layer": None, "layer_range": None,
        "variants": [
            {"key": "control", "weight": 50.0, "is_control": True, "payload": {"d": 0}},
            {"key": "treatment", "weight": 50.0, "is_control": False, "payload": {"d": 1}},
        ],
        "targeting": [], "overrides": {"qa-user-1": "treatment"}, "shipped_variant": None,
    },
    {
        "key": "disabled-shipped", "status": "completed", "salt": "disabled-shipped", "enabled": False,
        "traffic_allocation": 100.0, "layer": None, "layer_range": None,
        "variants": [
            {"key": "control", "weight": 50.0, "is_control": True, "payload": {}},
            {"key": "winner", "weight": 50.0, "is_control": False, "payload": {"w": 1}},
        ],
        "targeting": [], "overrides": {}, "shipped_variant": "winner",
    },
]

for _spec in DOCUMENT["experiments"]:  # the phase travels with exposures; it does not change answers
    _spec.setdefault("phase", 1)
    _spec.setdefault("audiences", [])
    _spec.setdefault("enabled", True)

DOCUMENT["environment"] = "production"
DOCUMENT["audiences"] = {
    "adults": {"match": "all", "conditions": [{"attribute": "age", "operator": "gte", "values": [18]}]},
    "eu": {"match": "all", "conditions": [{"attribute": "country", "operator": "in", "values": ["DE", "FR"]}]},
    "everyone": {"match": "all", "conditions": []},
    "mobile": {"match": "any", "conditions": [
        {"attribute": "platform", "operator": "in", "values": ["ios", "android"]},
        {"attribute": "app_version", "operator": "semver_gte", "values": ["2.0.0"]},
    ]},
    "anyone": {"match": "any", "conditions": []},
    "unused": {"match": "all", "conditions": [{"attribute": "country", "operator": "equals", "values": ["XX"]}]},
}


def _flag(key: str, value_type: str, default: Any, *rules: dict[str, Any], enabled: bool = True) -> dict[str, Any]:
    return {"key": key, "type": value_type, "default": default, "enabled": enabled, "unit_salt": "",
            "rules": list(rules)}


def _ramp(key: str, rule_id: str, percent: float) -> dict[str, Any]:
    """One flag of a ramp: the same rule salt at growing percentages (sticky: only adds units)."""
    return _flag(key, "boolean", False, {"id": rule_id, "type": "rollout", "audiences": [], "value": True,
                                         "percent": percent, "salt": "ramp"})


DOCUMENT["flags"] = sorted([
    _flag(
        "new-checkout", "boolean", False,
        {"id": "r1", "type": "units", "units": {"qa-user-1": True, "qa-user-2": False}, "hashed_units": {}},
        {"id": "r2", "type": "force", "audiences": ["eu", "adults"], "value": True},
        {"id": "r3", "type": "rollout", "audiences": [], "value": True, "percent": 30.0, "salt": "new-checkout"},
    ),
    _flag(
        "checkout-color", "string", "blue",
        {"id": "r4", "type": "experiment", "experiment": "checkout-button",
         "values": {"control": "blue", "green": "green"}},
        {"id": "r5", "type": "rollout", "audiences": ["mobile"], "value": "teal", "percent": 50.0,
         "salt": "checkout-color"},
    ),
    _flag(
        "max-items", "number", 10,
        {"id": "r6", "type": "force", "audiences": ["no-such-audience"], "value": 99},
        {"id": "r7", "type": "rollout", "audiences": ["everyone"], "value": 20.5, "percent": 33.33,
         "salt": "max-items"},
        {"id": "r8", "type": "force", "audiences": [], "value": 15},
        {"id": "r9", "type": "force", "audiences": [], "value": 0},
    ),
    _flag(
        "layout", "json", {"columns": 2},
        {"id": "r10", "type": "experiment", "experiment": "no-such-experiment", "values": {"a": {"x": 1}}},
        {"id": "r11", "type": "experiment", "experiment": "disabled-test",
         "values": {"treatment": {"columns": 5}}},
        {"id": "r12", "type": "experiment", "experiment": "paused-test", "values": {"treatment": [1, 2]}},
        {"id": "r13", "type": "experiment", "experiment": "ranking-v2",
         "values": {"b": {"columns": 3}, "c": [{"columns": 4}, None]}},
        {"id": "r14", "type": "units", "units": {"u-3": {"columns": 1}, "😀": "smile"}, "hashed_units": {}},
        {"id": "r15", "type": "force", "audiences": ["anyone", "adults"], "value": None},
    ),
    _flag(
        "kill-switch", "boolean", True,
        {"id": "r16", "type": "force", "audiences": [], "value": False},
        enabled=False,
    ),
    _flag("empty", "string", ""),
    _flag(
        "copy", "string", "Buy",
        {"id": "r17", "type": "experiment", "experiment": "checkout-copy",
         "values": {"urgent": "Buy now"}},
        {"id": "r18", "type": "rollout", "audiences": ["eu"], "value": "Kaufen", "percent": 0,
         "salt": "copy"},
        {"id": "r19", "type": "rollout", "audiences": ["mobile"], "value": "Tap to buy", "percent": 100,
         "salt": "copy"},
    ),
    _ramp("ramp-00", "r20", 0.0),
    _ramp("ramp-10", "r21", 10.0),
    _ramp("ramp-50", "r22", 50.0),
    _ramp("ramp-100", "r23", 100.0),
], key=lambda f: f["key"])

#: Flags of the vectors' ramp, in increasing percent: a unit on at one step is on at every later one.
RAMP_FLAGS = ("ramp-00", "ramp-10", "ramp-50", "ramp-100")
UNKNOWN_FLAG_KEY = "no-such-flag"

UNIT_IDS = [f"u-{i}" for i in range(40)] + [
    "qa-user-1", "qa-user-2", "ünit-ß", "用户-42", "😀", " spaced id ", "a:b:c", "x" * 256,
]

ATTRIBUTE_SETS = [
    {"country": "CN", "platform": "ios", "age": 30, "beta": True, "email": "a@b.c"},
    {"country": "US", "platform": "web", "age": "17", "beta": "true", "email": "nobody"},
    {"country": "DE", "age": 18.0, "beta": False, "email": "x@y", "banned": False},
    {},
]

HASH_CASES = [
    ("exp", "checkout-button", "u-123"),
    ("exp", "checkout-button", "qa-user-1"),
    ("layer", "checkout-layer", "u-123"),
    ("exp", "Free Shipping 2026 ünï", "用户-42"),
    ("exp", "s", "😀"),
    ("exp", "", ""),
    ("layer", "a:b", "c"),
    ("layer", "a", "b:c"),
    ("flag", "new-checkout", "u-123"),
    ("flag", "ramp", "用户-42"),
]

RANGE_CASES = [
    ([50.0, 50.0], 100.0), ([50.0, 50.0], 10.0), ([33.33, 33.33, 33.34], 20.0),
    ([33.33, 33.33, 33.34], 100.0), ([90.0, 10.0], 55.55), ([25, 25, 25, 25], 0.01),
    ([1.0, 1.0, 1.0], 100.0), ([70.0, 30.0], 0.0),
]


def _rule(attribute: str, operator: str, *values: Any) -> dict[str, Any]:
    return {"attribute": attribute, "operator": operator, "values": list(values)}


SEMVER_ORDER = [  # ascending precedence (semver.org section 11, plus big numbers and build metadata)
    "0.9.9", "1.0.0-0.3.7", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
    "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.3-RC.1", "1.2.3-beta",
    "1.2.3", "1.10.0", "2.0.0", "10.0.0", "18446744073709551616.0.0",
]
SEMVER_INVALID = ["1.2", "v1.2.3", "01.2.3", "1.2.3-", "1.2.3-01", "1.2.3+", "1.2.3.4", " 1.2.3", "١.٢.٣", "", 123]
INSTANTS = [  # ascending instants
    "1969-12-31T23:59:59.999999999Z", "1970-01-01", "2024-02-29", "2026-03-01T00:00:00+01:00",
    "2026-03-01", "2026-03-01T00:00:00.000000001Z", "2026-02-28T19:00-05:00", "2026-03-01T12:00:00Z",
]
INSTANTS_INVALID = ["2026-02-30", "2026-03-01T12:00:00", "2026-03-01 12:00:00Z", "2026-3-1",
                    "2026-03-01T24:00:00Z", "2026-03-01T12:00:60Z", "2026-03-01t12:00:00z", 1772366400, ""]


def targeting_cases() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Single rules and attributes covering every operator's type rules (docs/assignment.md 5)."""
    cases = []
    for v in ("18", 18, 18.0, "18.0", "1.8e1", "017", "18 ", True, "abc", None):
        for op in ("gt", "gte", "lt", "lte", "equals"):
            for bound in (18, "18", "17.5"):
                cases.append((_rule("age", op, bound), {"age": v} if v is not None else {}))
    for op in ("semver_eq", "semver_gt", "semver_gte", "semver_lt", "semver_lte"):
        for i, a in enumerate(SEMVER_ORDER):
            for j in (i - 1, i, i + 1):
                if 0 <= j < len(SEMVER_ORDER):
                    cases.append((_rule("app_version", op, SEMVER_ORDER[j]), {"app_version": a}))
        cases.append((_rule("app_version", op, "1.0.0+build.1"), {"app_version": "1.0.0+build.2"}))
        cases.append((_rule("app_version", op, "1.0.0"), {"app_version": "1.0.0+x.7.z"}))
        for bad in SEMVER_INVALID:
            cases.append((_rule("app_version", op, "1.2.3"), {"app_version": bad}))
            cases.append((_rule("app_version", op, bad), {"app_version": "1.2.3"}))
        cases.append((_rule("app_version", op, "1.2.3"), {}))
    for op in ("before", "after"):
        for i, a in enumerate(INSTANTS):
            for b in INSTANTS[max(0, i - 1): i + 2]:
                cases.append((_rule("signup", op, b), {"signup": a}))
        for bad in INSTANTS_INVALID:
            cases.append((_rule("signup", op, "2026-03-01"), {"signup": bad}))
            cases.append((_rule("signup", op, bad), {"signup": "2026-03-01"}))
        cases.append((_rule("signup", op, "2026-03-01"), {}))
    return cases


def build() -> dict[str, Any]:
    evaluator = Evaluator(DOCUMENT)
    layers = DOCUMENT["layers"]
    cases = []
    for spec in DOCUMENT["experiments"]:
        layer = spec["layer"]
        for i, unit in enumerate(UNIT_IDS):
            attributes = ATTRIBUTE_SETS[i % len(ATTRIBUTE_SETS)]
            answer = evaluator.evaluate(spec["key"], unit, attributes)
            cases.append({
                "experiment": spec["key"], "unit_id": unit, "attributes": attributes,
                "experiment_bucket": experiment_bucket(spec["salt"], unit),
                "layer_bucket": layer_bucket(layers[layer]["salt"], unit) if layer else None,
                "variant": answer.variant, "in_experiment": answer.in_experiment,
                "reason": answer.reason,
            })
    return {
        "description": "Assignment test vectors; the algorithm is specified in docs/assignment.md.",
        "hash": [
            {
                "namespace": ns, "salt": salt, "unit_id": unit,
                "input_hex": hash_input(ns, salt, unit).hex(),
                "sha256_hex": hashlib.sha256(hash_input(ns, salt, unit)).hexdigest(),
                "bucket": bucket(ns, salt, unit),
            }
            for ns, salt, unit in HASH_CASES
        ],
        "ranges": [
            {"weights": w, "traffic_allocation": a, "ranges": [list(r) for r in variant_ranges(w, a)]}
            for w, a in RANGE_CASES
        ],
        "document": DOCUMENT,
        "cases": cases,
        "targeting": [
            {"rule": rule, "attributes": attributes, "passes": matches([rule], attributes)}
            for rule, attributes in targeting_cases()
        ],
        "flag_cases": flag_cases(DOCUMENT),
        **client_vectors(),
    }


def flag_cases(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every flag of ``document`` (and one it lacks) for every vector unit: the answers any
    evaluator must give (``value``, ``reason``, ``rule_id``, ``variant``; section 6a)."""
    evaluator = Evaluator(document)
    keys = [f["key"] for f in document.get("flags") or []] + [UNKNOWN_FLAG_KEY]
    cases = []
    for key in keys:
        for i, unit in enumerate(UNIT_IDS):
            attributes = ATTRIBUTE_SETS[(i + len(key)) % len(ATTRIBUTE_SETS)]
            result = evaluator.evaluate_flag(key, unit, attributes)
            cases.append({
                "flag": key, "unit_id": unit, "attributes": attributes, "value": result.value,
                "reason": result.reason, "rule_id": result.rule_id, "variant": result.variant,
            })
    return cases


def check_flag_coverage(cases: list[dict[str, Any]], document: dict[str, Any]) -> None:
    """Every reason and every rule kind decides at least one case (the vectors' promise)."""
    reasons = {c["reason"] for c in cases}
    assert reasons == set(FLAG_REASONS), set(FLAG_REASONS) - reasons
    kinds = {r["id"]: r["type"] for f in document["flags"] for r in f["rules"]}
    decided = {kinds[c["rule_id"]] for c in cases if c["rule_id"]}
    assert decided == set(RULE_TYPES), set(RULE_TYPES) - decided


def _vector_override_salt(key: str) -> str:
    return f"vector-override-salt-{key}"  # the server derives it from SECRET_KEY instead


OVERRIDE_CASES = [("s", "qa-user-1"), ("vector-override-salt-checkout-button", "qa-user-1"),
                  ("", ""), ("ß", "用户-42")]


def client_vectors() -> dict[str, Any]:
    """Section 7a: the client-safe document of ``DOCUMENT`` and its answers (hashed overrides).

    ``client_cases`` cover every experiment of the client document: each answer equals the
    full document's answer (tests/assignment/test_clientdoc.py checks it)."""
    client = client_document(DOCUMENT, _vector_override_salt)
    client["generated_at"] = DOCUMENT["generated_at"]
    evaluator = Evaluator(client)
    cases = []
    for spec in client["experiments"]:
        for i, unit in enumerate(UNIT_IDS):
            attributes = ATTRIBUTE_SETS[i % len(ATTRIBUTE_SETS)]
            answer = evaluator.evaluate(spec["key"], unit, attributes)
            cases.append({
                "experiment": spec["key"], "unit_id": unit, "attributes": attributes,
                "variant": answer.variant, "in_experiment": answer.in_experiment,
                "reason": answer.reason,
            })
    return {
        "client_flag_cases": flag_cases(client),
        "overrides": [
            {"override_salt": salt, "unit_id": unit, "hash": override_hash(salt, unit)}
            for salt, unit in OVERRIDE_CASES
        ],
        "client_document": client,
        "client_cases": cases,
    }


def main() -> None:
    PATH.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
