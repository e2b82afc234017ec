"""Targeting semantics, operator by operator (types, missing attributes, reasons)."""
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assignment.evaluator import Evaluator
from assignment.targeting import as_number, compile_rule, matches, same
from experiments.operands import instant_key, semver_key

from .reference import ref_rule

CASES = [
    # (operator, values, attribute value or MISSING, passes)
    ("equals", ["CN"], "CN", True),
    ("equals", ["CN"], "cn", False),
    ("equals", ["CN"], " CN", False),
    ("equals", [30], "30", True),
    ("equals", [30], 30.0, True),
    ("equals", ["30"], 30, True),
    ("equals", ["30"], "30.0", False),  # two strings compare exactly
    ("equals", [True], True, True),
    ("equals", [True], "true", True),
    ("equals", [True], 1, False),
    ("equals", [1], True, False),
    ("equals", [False], "False", False),
    ("equals", ["x"], None, False),
    ("not_equals", ["web"], "ios", True),
    ("not_equals", ["web"], "web", False),
    ("not_equals", ["web"], None, False),  # missing fails negative operators too
    ("in", ["CN", "US"], "US", True),
    ("in", ["CN", "US"], "DE", False),
    ("in", [1, 2, 3], "2", True),
    ("in", [], "x", False),
    ("not_in", ["CN", "US"], "DE", True),
    ("not_in", ["CN", "US"], "CN", False),
    ("not_in", ["CN"], None, False),
    ("gt", [18], 19, True),
    ("gt", [18], 18, False),
    ("gte", [18], "18", True),
    ("gte", [18], "18.5", True),
    ("lt", [2.5], 2, True),
    ("lte", ["1e3"], 1000, True),
    ("gt", [18], "abc", False),
    ("gt", [18], True, False),
    ("gt", ["abc"], 19, False),
    ("gt", [18], "019", False),  # not a decimal number string
    ("lt", [0], -1, True),
    ("gt", [1], 10**400, False),  # not representable: fails, never crashes
    ("contains", ["@"], "a@b.c", True),
    ("contains", ["@"], "nobody", False),
    ("contains", ["1"], 123, False),
    ("contains", ["A"], "abc", False),
    ("exists", [], "", True),
    ("exists", [], False, True),
    ("exists", [], None, False),
    ("not_exists", [], None, True),
    ("not_exists", [], 0, False),
    ("bogus", ["x"], "x", False),
]


@pytest.mark.parametrize(("operator", "values", "value", "passes"), CASES, ids=lambda v: repr(v)[:20])
def test_operator_semantics(operator, values, value, passes):
    rule = {"attribute": "a", "operator": operator, "values": values}
    attrs = {} if value is None else {"a": value}
    assert (compile_rule(rule)(attrs) is None) is passes
    assert ref_rule(rule, attrs) is passes
    # An explicit null behaves like a missing attribute.
    if value is None:
        assert (compile_rule(rule)({"a": None}) is None) is passes


def test_all_rules_must_pass():
    rules = [
        {"attribute": "country", "operator": "in", "values": ["CN", "US"]},
        {"attribute": "platform", "operator": "equals", "values": ["ios"]},
    ]
    assert matches(rules, {"country": "CN", "platform": "ios"})
    assert not matches(rules, {"country": "CN", "platform": "web"})
    assert not matches(rules, {"country": "DE", "platform": "ios"})
    assert matches([], {})


def test_helpers():
    assert as_number("1.5e2") == 150.0
    assert as_number("nan") is None and as_number("Infinity") is None and as_number(float("inf")) is None
    assert same("true", True) and not same("TRUE", True)


def test_failing_unit_is_not_enrolled_and_told_why():
    doc = {
        "experiments": [{
            "key": "e", "status": "running", "salt": "e", "traffic_allocation": 100,
            "layer": None, "layer_range": None,
            "variants": [
                {"key": "control", "weight": 50, "is_control": True, "payload": {"c": 1}},
                {"key": "b", "weight": 50, "is_control": False, "payload": {"c": 2}},
            ],
            "targeting": [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}],
            "overrides": {}, "shipped_variant": None,
        }],
    }
    evaluator = Evaluator(doc)
    answer = evaluator.evaluate("e", "u-1", {"country": "DE"})
    assert (answer.in_experiment, answer.reason, answer.variant, answer.payload) == (
        False, "targeting", "control", {"c": 1}
    )
    assert answer.detail == "country 'DE' not in ['CN', 'US']"
    assert evaluator.evaluate("e", "u-1", {}).detail == "country is missing"
    assert evaluator.evaluate("e", "u-1", {"country": "CN"}).reason == "assigned"


# --- semver and instant operators (docs/assignment.md section 5) ---------------------------------

_ident = st.one_of(
    st.integers(0, 10**20).map(str),
    st.from_regex(r"[0-9]*[A-Za-z-][0-9A-Za-z-]{0,5}", fullmatch=True),
)
_versions = st.builds(
    lambda core, pre, build: ".".join(map(str, core)) + (f"-{'.'.join(pre)}" if pre else "") + (f"+{build}" if build else ""),
    st.tuples(*[st.integers(0, 10**20)] * 3),
    st.lists(_ident, max_size=4),
    st.sampled_from(["", "build.1", "sha.5114f85"]),
)


@settings(max_examples=400, deadline=None)
@given(_versions, _versions)
def test_semver_precedence_matches_the_semver_package(a, b):
    semver = pytest.importorskip("semver")
    expected = semver.Version.parse(a).compare(b)
    ka, kb = semver_key(a), semver_key(b)
    assert ka is not None and kb is not None
    assert ((ka > kb) - (ka < kb)) == expected
    assert matches([{"attribute": "v", "operator": "semver_gte", "values": [b]}], {"v": a}) is (expected >= 0)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_instants_match_the_standard_library(moment, offset_minutes):
    zone = timezone(timedelta(minutes=offset_minutes))
    aware = moment.replace(tzinfo=zone)
    sign = "+" if offset_minutes >= 0 else "-"
    text = f"{aware.year:04d}-" + aware.strftime("%m-%dT%H:%M:%S") + f".{aware.microsecond:06d}{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    seconds, nanos = instant_key(text)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    delta = aware - epoch
    assert (seconds, nanos) == (delta.days * 86400 + delta.seconds, delta.microseconds * 1000)


@pytest.mark.parametrize("op,bound,value,reason", [
    ("semver_gte", "1.4.0", "1.3.9", "app '1.3.9' is not >= '1.4.0'"),
    ("semver_eq", "1.4.0", "1.4", "not comparable"),
    ("after", "2026-03-01", "2026-03-01", "app '2026-03-01' is not after '2026-03-01'"),
    ("before", "2026-03-01", 1772366400, "not comparable"),
])
def test_new_operators_say_why_they_fail(op, bound, value, reason):
    check = compile_rule({"attribute": "app", "operator": op, "values": [bound]})
    assert reason in check({"app": value})
    assert check({}) == "app is missing"
