"""Property-based tests (Hypothesis) of bucketing, targeting and assignment on arbitrary input.

Whatever the unit id (any Unicode text without lone surrogates: emoji, combining marks, RTL,
up to the API's 256-character limit, empty where the pure evaluator allows it) and whatever the
attributes, the code never raises and always gives a valid, deterministic answer. The pure part
(``assignment.hashing``, ``assignment.targeting``, ``assignment.evaluator``) is exercised
directly; the API part through the Django test client, where bad input must be a 400, never 500.
"""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assignment.evaluator import ASSIGNED, OVERRIDE, REASONS, Evaluator, variant_ranges
from assignment.hashing import BUCKETS, bucket, percent_to_units, prefix_bucketer
from assignment.targeting import OPERATORS, compile_rule, compile_rules, first_failure

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None)

# --- strategies -----------------------------------------------------------------------------------

#: Any text without lone surrogates (Hypothesis excludes category Cs by default), emoji included.
unit_ids = st.one_of(
    st.text(max_size=256),
    st.text(alphabet=st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), min_size=1, max_size=256),
    st.text(alphabet=st.characters(categories=["Mn", "Zs", "Cc", "Cf"]), max_size=64),
    st.builds(lambda c, n: c * n, st.characters(), st.integers(1, 256)),
)
api_unit_ids = unit_ids.filter(lambda u: 0 < len(u) <= 256 and "\x00" not in u)

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["true", "false", "1", "1.0", "-0", "1e400", "NaN", "Infinity", " 1", "CN", "US", ""]),
)
# Rules as the *document* may carry them: any operator name, any JSON values (the pure layer
# must cope even with what the API validation would have refused).
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
attribute_names = st.one_of(st.sampled_from(["country", "age", "beta", "email", "platform"]), st.text(max_size=20))
rules = st.fixed_dictionaries({
    "attribute": attribute_names,
    "operator": st.one_of(st.sampled_from(OPERATORS), st.text(max_size=10)),
    "values": st.lists(json_values, max_size=4),
})
attributes = st.dictionaries(attribute_names, scalars, max_size=8)


@st.composite
def weights(draw, n: int) -> list[Decimal]:
    """``n`` positive weights with two decimals summing to exactly 100 (as the services demand)."""
    cuts = sorted(draw(st.lists(st.integers(1, 9999), min_size=n - 1, max_size=n - 1, unique=True)))
    bounds = [0, *cuts, 10000]
    return [Decimal(b - a) / 100 for a, b in zip(bounds, bounds[1:], strict=False)]


valid_rules = st.one_of(
    st.builds(lambda a, v: {"attribute": a, "operator": "in", "values": v},
              st.sampled_from(["country", "platform"]), st.lists(st.sampled_from(["CN", "US", "ios", "web"]), min_size=1, max_size=3)),
    st.builds(lambda op, v: {"attribute": "age", "operator": op, "values": [v]},
              st.sampled_from(["gt", "gte", "lt", "lte"]), st.integers(-5, 120)),
    st.builds(lambda op: {"attribute": "beta", "operator": op, "values": []}, st.sampled_from(["exists", "not_exists"])),
    st.builds(lambda s: {"attribute": "email", "operator": "contains", "values": [s]}, st.text(min_size=1, max_size=3)),
)


@st.composite
def documents(draw):
    """A configuration document as ``assignment.document`` builds it, with random contents."""
    layers = {"checkout": {"salt": draw(st.text(max_size=20)), "holdout_percent": float(draw(st.integers(0, 10000))) / 100}}
    experiments = []
    for i in range(draw(st.integers(1, 4))):
        n = draw(st.integers(2, 5))
        keys = ["control", *[f"t{j}" for j in range(1, n)]]
        status = draw(st.sampled_from(["draft", "running", "running", "paused", "completed", "archived"]))
        layered = draw(st.booleans())
        start = draw(st.integers(0, BUCKETS))
        experiments.append({
            "key": f"exp-{i}",
            "status": status,
            "salt": draw(st.text(max_size=30)) or f"exp-{i}",
            "traffic_allocation": float(draw(st.integers(0, 10000))) / 100,
            "layer": "checkout" if layered else None,
            "layer_range": [start, draw(st.integers(start, BUCKETS))] if layered else None,
            "variants": [
                {"key": k, "weight": float(w), "is_control": k == "control", "payload": {"v": k}}
                for k, w in zip(keys, draw(weights(n)), strict=True)
            ],
            "targeting": draw(st.lists(valid_rules, max_size=3)),
            "overrides": draw(st.dictionaries(unit_ids, st.sampled_from(keys), max_size=3)),
            "shipped_variant": draw(st.sampled_from([None, *keys])) if status in ("completed", "archived") else None,
        })
    return {"schema_version": 1, "version": "prop", "hash": {"algorithm": "sha256", "buckets": BUCKETS},
            "layers": layers, "experiments": experiments}


# --- hashing ----------------------------------------------------------------------------------------

@SETTINGS
@given(salt=st.text(max_size=128), unit=unit_ids)
def test_bucket_is_in_range_and_the_fast_path_agrees(salt, unit):
    b = bucket("exp", salt, unit)
    assert 0 <= b < BUCKETS
    assert prefix_bucketer("exp", salt)(unit) == b
    assert bucket("exp", salt, unit) == b  # deterministic


@SETTINGS
@given(percent=st.one_of(st.floats(min_value=-1e9, max_value=1e9), st.decimals(min_value=0, max_value=100, places=2)))
def test_percent_to_units_is_clamped(percent):
    units = percent_to_units(percent)
    assert 0 <= units <= BUCKETS


@SETTINGS
@given(data=st.data())
def test_variant_ranges_partition_and_respect_allocation(data):
    n = data.draw(st.integers(2, 6))
    ws = [float(w) for w in data.draw(weights(n))]
    allocation = data.draw(st.integers(0, 10000)) / 100
    ranges = variant_ranges(ws, allocation)
    assert len(ranges) == n
    previous_end = 0
    for start, end in ranges:
        assert previous_end <= start <= end <= BUCKETS
        previous_end = end
    enrolled = sum(end - start for start, end in ranges)
    assert enrolled <= percent_to_units(allocation) <= BUCKETS
    assert enrolled >= percent_to_units(allocation) - n  # floor loses at most one bucket per variant


# --- targeting ------------------------------------------------------------------------------------

@SETTINGS
@given(rule=rules, attrs=attributes)
def test_any_rule_on_any_attributes_answers_without_raising(rule, attrs):
    result = compile_rule(rule)(attrs)
    assert result is None or (isinstance(result, str) and result)


@SETTINGS
@given(name=attribute_names, value=scalars, candidates=st.lists(scalars, min_size=1, max_size=4))
def test_negated_operators_are_complements_for_present_attributes(name, value, candidates):
    attrs = {name: value}
    exists = compile_rule({"attribute": name, "operator": "exists", "values": []})(attrs) is None
    not_exists = compile_rule({"attribute": name, "operator": "not_exists", "values": []})(attrs) is None
    assert exists != not_exists
    for positive, negative, values in (("equals", "not_equals", candidates[:1]), ("in", "not_in", candidates)):
        yes = compile_rule({"attribute": name, "operator": positive, "values": values})(attrs) is None
        no = compile_rule({"attribute": name, "operator": negative, "values": values})(attrs) is None
        if value is None:
            assert not yes and not no  # a missing attribute never passes a comparison
        else:
            assert yes != no


@SETTINGS
@given(value=scalars, bound=scalars)
def test_ordering_operators_are_consistent(value, bound):
    attrs = {"n": value}
    passes = {op: compile_rule({"attribute": "n", "operator": op, "values": [bound]})(attrs) is None
              for op in ("gt", "gte", "lt", "lte")}
    if any(passes.values()):
        assert passes["gt"] != passes["lte"] and passes["lt"] != passes["gte"]
    if passes["gt"] or passes["lt"]:
        assert passes["gt"] != passes["lt"]


@SETTINGS
@given(rule_list=st.lists(rules, max_size=5), attrs=attributes)
def test_first_failure_agrees_with_each_rule(rule_list, attrs):
    checks = compile_rules(rule_list)
    failure = first_failure(checks, attrs)
    individual = [c(attrs) for c in checks]
    assert failure == next((f for f in individual if f is not None), None)


# --- the evaluator ----------------------------------------------------------------------------------

def _assert_valid(answer, spec, unit):
    variant_keys = {v["key"] for v in spec["variants"]}
    assert answer.experiment == spec["key"]
    assert answer.variant in variant_keys
    assert answer.reason in REASONS
    assert isinstance(answer.detail, str) and answer.detail
    assert isinstance(answer.payload, dict)
    if answer.reason == ASSIGNED:
        assert answer.in_experiment and spec["status"] == "running"
        weight = next(v["weight"] for v in spec["variants"] if v["key"] == answer.variant)
        assert weight > 0
    elif answer.reason == OVERRIDE:
        assert spec["overrides"][unit] == answer.variant
    else:
        assert not answer.in_experiment
    json.dumps(answer.as_dict(), allow_nan=False)


@settings(SETTINGS, max_examples=120)
@given(doc=documents(), unit=unit_ids, attrs=attributes)
def test_evaluator_always_answers_validly_and_deterministically(doc, unit, attrs):
    evaluator = Evaluator(doc)
    again = Evaluator.from_json(json.dumps(doc))  # what an SDK rebuilds from the JSON text
    for spec in doc["experiments"]:
        answer = evaluator.evaluate(spec["key"], unit, attrs)
        _assert_valid(answer, spec, unit)
        assert again.evaluate(spec["key"], unit, attrs) == answer
    many = evaluator.evaluate_many(unit, attrs)
    assert [a.experiment for a in many] == [s["key"] for s in doc["experiments"] if s["status"] == "running"]
    for answer in many:
        assert answer == evaluator.evaluate(answer.experiment, unit, attrs)


@settings(SETTINGS, max_examples=60)
@given(doc=documents(), unit=unit_ids)
def test_layer_experiments_never_share_an_enrolled_unit(doc, unit):
    # Give the layered running experiments disjoint ranges, as the services allocate them.
    layered = [s for s in doc["experiments"] if s["layer"]]
    cursor = percent_to_units(doc["layers"]["checkout"]["holdout_percent"])
    for spec in layered:
        size = (BUCKETS - cursor) // max(1, len(layered))
        spec["layer_range"] = [cursor, cursor + size]
        cursor += size
    evaluator = Evaluator(doc)
    enrolled = [a for a in evaluator.evaluate_many(unit) if a.in_experiment and a.reason == ASSIGNED]
    layers_hit = [next(s for s in doc["experiments"] if s["key"] == a.experiment)["layer"] for a in enrolled]
    assert layers_hit.count("checkout") <= 1


# --- through the API ---------------------------------------------------------------------------------

API_SETTINGS = settings(SETTINGS, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def api(api_client_for):
    from assignment import exposures, runtime
    from experiments import services
    from experiments.models import Metric

    runtime.reset()
    Metric.objects.get_or_create(key="purchase", defaults={"name": "Purchase", "event": "purchase", "kind": "conversion"})
    exp = services.create_experiment({
        "key": "prop", "name": "prop", "traffic_allocation": 100, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "green", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
        "targeting": [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}],
    })
    services.start_experiment(exp)
    yield api_client_for("client")
    runtime.reset()
    exposures.local_buffer.take()


@API_SETTINGS
@given(unit=api_unit_ids, attrs=st.dictionaries(st.text(min_size=1, max_size=128).filter(lambda s: "\x00" not in s),
                                                st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                                                          st.floats(allow_nan=False, allow_infinity=False),
                                                          st.text(max_size=1024).filter(lambda s: "\x00" not in s)),
                                                max_size=10))
def test_api_assigns_any_unicode_unit(api, unit, attrs):
    r = api.post("/api/v1/assignments", {"unit_id": unit, "attributes": attrs, "experiments": ["prop"]}, format="json")
    assert r.status_code == 200, r.content[:300]
    body = r.json()
    assert body["unit_id"] == unit  # byte for byte: it is what was hashed
    [answer] = body["assignments"]
    assert answer["variant"] in ("control", "green") and answer["reason"] in REASONS
    expected = Evaluator.from_json(api.get("/api/v1/config").content).evaluate("prop", unit, attrs)
    assert answer == {k: v for k, v in expected.as_dict().items()}


@API_SETTINGS
@given(unit=api_unit_ids, country=st.one_of(st.sampled_from(["CN", "US", "DE"]), st.text(min_size=1, max_size=50).filter(lambda s: "\x00" not in s)))
def test_single_endpoint_agrees_with_the_batch_one(api, unit, country):
    single = api.get("/api/v1/experiments/prop/assignment", {"unit_id": unit, "country": country})
    batch = api.post("/api/v1/assignments", {"unit_id": unit, "attributes": {"country": country}, "experiments": ["prop"]}, format="json")
    assert single.status_code == batch.status_code == 200, (single.content[:200], batch.content[:200])
    single_body = single.json()
    assert single_body["unit_id"] == unit
    assert {k: single_body[k] for k in ("variant", "reason", "in_experiment")} == {
        k: batch.json()["assignments"][0][k] for k in ("variant", "reason", "in_experiment")}


garbage = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=300)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@API_SETTINGS
@given(body=st.one_of(
    garbage,
    st.fixed_dictionaries({"unit_id": garbage}, optional={"attributes": garbage, "experiments": garbage}),
    st.fixed_dictionaries({"unit_id": st.one_of(st.just(""), st.text(min_size=257, max_size=300), st.just("a\x00b"))}),
))
def test_api_refuses_garbage_with_a_4xx_naming_the_field(api, body):
    r = api.post("/api/v1/assignments", body, format="json")
    assert r.status_code in (200, 400), (r.status_code, r.content[:300])
    assert isinstance(r.json(), dict)
    if r.status_code == 400:
        assert r.json()  # names at least one field (or "detail"/"non_field_errors")


@API_SETTINGS
@given(unit=st.text(min_size=1, max_size=300))
def test_api_unit_id_limits(api, unit):
    """Up to 256 characters of text pass; longer, NUL or lone surrogates are a 400."""
    payload = json.dumps({"unit_id": unit, "experiments": ["prop"]}, ensure_ascii=True)
    r = api.post("/api/v1/assignments", payload, content_type="application/json")
    valid = len(unit) <= 256 and "\x00" not in unit
    assert r.status_code == (200 if valid else 400), (unit, r.content[:200])
    if not valid:
        assert "unit_id" in r.json()


def test_lone_surrogates_are_a_400_not_a_500(api):
    payload = '{"unit_id": "a\\ud800b", "attributes": {"k\\udfff": "v"}, "experiments": ["prop"]}'
    r = api.post("/api/v1/assignments", payload, content_type="application/json")
    assert r.status_code == 400 and "unit_id" in r.json()


def _refuse(token):
    raise AssertionError(f"non-standard JSON constant {token} in a response")


def test_non_finite_numbers_in_json_are_refused_or_answered_not_500(api):
    for raw in ('{"unit_id": "u", "attributes": {"age": NaN}}', '{"unit_id": "u", "attributes": {"age": Infinity}}',
                '{"unit_id": "u", "attributes": {"age": 1e999}}'):
        r = api.post("/api/v1/assignments", raw, content_type="application/json")
        assert r.status_code in (200, 400), (raw, r.status_code, r.content[:200])
        json.loads(r.content, parse_constant=_refuse)  # the answer itself is strict JSON


def test_unit_ids_may_be_empty_in_the_pure_evaluator_but_not_in_the_api(api):
    doc = {"experiments": [{"key": "e", "status": "running", "salt": "e", "traffic_allocation": 100,
                            "layer": None, "layer_range": None,
                            "variants": [{"key": "a", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
                            "targeting": [], "overrides": {}, "shipped_variant": None}]}
    assert Evaluator(doc).evaluate("e", "").variant in ("a", "b")
    r = api.post("/api/v1/assignments", {"unit_id": ""}, format="json")
    assert r.status_code == 400 and "unit_id" in r.json()


# --- issue 10: huge and non-finite numbers, NaN literals, deep nesting, quotes in ids ----------------

HOSTILE_NUMBERS = ["1e400", "-1e400", "1e309", "1" + "0" * 400, "-" + "9" * 310]
QUOTED_IDS = st.one_of(
    st.text(alphabet=st.sampled_from("'\"\\`´‘’“”ü😀𝔘 /?%&#=;:,\t"), min_size=1, max_size=40),
    st.builds(lambda a, b: f"{a}'{b}@example.com", st.text(max_size=10), st.text(max_size=10)),
).filter(lambda s: "\x00" not in s and not s.isspace() and len(s) <= 256)


@API_SETTINGS
@given(name=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s), number=st.sampled_from(HOSTILE_NUMBERS),
       others=st.dictionaries(st.sampled_from(["country", "age"]), st.sampled_from(["CN", 3, 2.5]), max_size=2))
def test_api_names_any_attribute_holding_a_number_beyond_a_double(api, name, number, others):
    attrs = {k: v for k, v in others.items() if k != name}
    text = json.dumps({"unit_id": "u", "attributes": {**attrs, name: "__N__"}}, ensure_ascii=True)
    r = api.post("/api/v1/assignments", text.replace('"__N__"', number), content_type="application/json")
    assert r.status_code == 400, (name, number, r.content[:200])
    assert list(r.json()) == ["attributes"] and len(r.json()["attributes"]) == 1


@settings(SETTINGS, max_examples=200)
@given(literal=st.sampled_from(["NaN", "Infinity", "-Infinity"]), where=st.integers(0, 3), depth=st.integers(0, 5))
def test_the_parser_refuses_nan_literals_anywhere(literal, where, depth):
    from rest_framework.exceptions import ParseError

    from access.parsers import parse_json

    value = "[" * depth + literal + "]" * depth
    bodies = ['{"a": %s}', '[1, %s]', '%s', '{"a": {"b": [%s]}}']
    with pytest.raises(ParseError):
        parse_json(bodies[where].replace("%s", value).encode())


@settings(SETTINGS, max_examples=200)
@given(depth=st.integers(1, 3000), kinds=st.lists(st.sampled_from(["[", "{"]), min_size=1, max_size=5))
def test_the_parser_accepts_up_to_32_levels_and_refuses_deeper_without_recursion_error(depth, kinds):
    from rest_framework.exceptions import ParseError

    from access.parsers import parse_json

    opens = [kinds[i % len(kinds)] for i in range(depth)]
    text = "".join("[" if o == "[" else '{"k":' for o in opens) + "0" + "".join("]" if o == "[" else "}" for o in reversed(opens))
    if depth <= 32:
        assert parse_json(text.encode()) == json.loads(text)
    else:
        with pytest.raises(ParseError, match="Nested deeper than 32 levels"):
            parse_json(text.encode())


finite_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**400), 10**400), st.floats(), st.text(max_size=5)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


def _reference_finite(value) -> bool:
    import math

    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        try:
            return math.isfinite(float(value))
        except OverflowError:
            return False
    if isinstance(value, float):
        return math.isfinite(value)
    children = value.values() if isinstance(value, dict) else value
    return all(_reference_finite(c) for c in children)


@SETTINGS
@given(value=finite_json)
def test_the_json_validator_agrees_with_a_recursive_reference(value):
    from access import jsonsafety

    assert (jsonsafety.non_finite_path(value) is None) == _reference_finite(value)
    if _reference_finite(value):
        json.dumps(value, allow_nan=False)  # what passes is strict JSON


@API_SETTINGS
@given(unit=QUOTED_IDS, event_id=QUOTED_IDS)
def test_events_keep_ids_with_quotes_and_unicode_byte_for_byte(api, unit, event_id):
    from analysis.models import Event

    Event.objects.filter(event_id=event_id).delete()
    r = api.post("/api/v1/events", {"events": [{"event_id": event_id, "unit_id": unit, "event": "purchase", "value": 1}]},
                 format="json")
    assert r.status_code == 202, r.content[:200]
    if r.json()["rejected"]:
        assert set(r.json()["rejected"][0]["errors"]) <= {"event_id", "unit_id"}
    else:
        assert Event.objects.get(event_id=event_id).unit_id == unit


@settings(API_SETTINGS, max_examples=12)
@given(unit=st.one_of(QUOTED_IDS, st.sampled_from(["a\nb", "\r\n'x'", "o'brien@example.com\n"])))
def test_erasure_takes_any_quoted_or_unicode_id(api_client_for, unit):
    from urllib.parse import quote

    r = api_client_for("admin").delete(f"/api/v1/units/{quote(unit, safe='')}")
    assert r.status_code in (200, 400), (unit, r.status_code, r.content[:200])
    if r.status_code == 200:
        assert r.json()["unit_id"] == unit
    else:
        assert "unit_id" in r.json()
