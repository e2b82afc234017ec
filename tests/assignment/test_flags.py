"""Flag and audience semantics of the server evaluator (docs/assignment.md 5a, 6, 6a): every
reason, rule order, rollout stickiness under ramp-up, salt independence, experiment audiences
and the per-environment switch."""
from __future__ import annotations

import pytest

from assignment.audiences import Audiences
from assignment.clientdoc import client_document, override_hash, secret_override_salt
from assignment.evaluator import Evaluator
from assignment.flags import FLAG_REASONS, FlagResult, flag_bucket
from assignment.hashing import bucket

UNITS = [f"user-{i}" for i in range(2000)]


def experiment(key="exp", **extra):
    spec = {
        "key": key, "status": "running", "salt": key, "traffic_allocation": 100.0, "layer": None,
        "layer_range": None, "targeting": [], "overrides": {}, "shipped_variant": None,
        "audiences": [], "enabled": True,
        "variants": [
            {"key": "control", "weight": 50.0, "is_control": True, "payload": {"c": 1}},
            {"key": "b", "weight": 50.0, "is_control": False, "payload": {"b": 1}},
        ],
    }
    spec.update(extra)
    return spec


def document(flags=(), experiments=(), audiences=None):
    return {"schema_version": 1, "version": "t", "hash": {"algorithm": "sha256", "buckets": 10000},
            "layers": {}, "experiments": list(experiments), "audiences": audiences or {},
            "flags": list(flags), "environment": "production"}


def flag(key="f", *rules, default=False, enabled=True, type="boolean", unit_salt=""):
    return {"key": key, "type": type, "default": default, "enabled": enabled, "unit_salt": unit_salt,
            "rules": list(rules)}


def rollout(percent, salt="ramp", value=True, audiences=(), rule_id="r"):
    return {"id": rule_id, "type": "rollout", "audiences": list(audiences), "value": value,
            "percent": percent, "salt": salt}


EU = {"eu": {"match": "all", "conditions": [{"attribute": "country", "operator": "in", "values": ["DE", "FR"]}]}}


# --- audiences ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "attributes", "member"), [
    ({"match": "all", "conditions": []}, {}, True),
    ({"match": "any", "conditions": []}, {}, True),
    ({"match": "all", "conditions": [{"attribute": "a", "operator": "equals", "values": [1]},
                                     {"attribute": "b", "operator": "exists", "values": []}]}, {"a": 1}, False),
    ({"match": "all", "conditions": [{"attribute": "a", "operator": "equals", "values": [1]},
                                     {"attribute": "b", "operator": "exists", "values": []}]}, {"a": "1", "b": 0}, True),
    ({"match": "any", "conditions": [{"attribute": "a", "operator": "equals", "values": [1]},
                                     {"attribute": "b", "operator": "exists", "values": []}]}, {"b": 0}, True),
    ({"match": "any", "conditions": [{"attribute": "a", "operator": "equals", "values": [1]},
                                     {"attribute": "b", "operator": "exists", "values": []}]}, {"a": 2}, False),
    ({"match": "any", "conditions": [{"attribute": "a", "operator": "bogus", "values": []}]}, {"a": 2}, False),
])
def test_audience_membership(spec, attributes, member):
    assert Audiences({"x": spec}).is_member("x", attributes) is member


def test_an_undefined_audience_admits_nobody():
    audiences = Audiences({})
    assert audiences.is_member("ghost", {}) is False
    assert audiences.checks(["ghost"])[0]({}) == "audience 'ghost' is not defined"


def test_experiment_audiences_are_anded_with_targeting_and_named_in_the_detail():
    spec = experiment(audiences=["eu"], targeting=[{"attribute": "age", "operator": "gte", "values": [18]}])
    evaluator = Evaluator(document(experiments=[spec], audiences=EU))
    assert evaluator.evaluate("exp", "u", {"country": "DE", "age": 20}).in_experiment
    outside = evaluator.evaluate("exp", "u", {"country": "US", "age": 20})
    assert (outside.variant, outside.in_experiment, outside.reason) == ("control", False, "targeting")
    assert "'eu'" in outside.detail
    assert evaluator.evaluate("exp", "u", {"country": "DE", "age": 2}).reason == "targeting"


def test_disabled_in_environment_sits_between_override_and_not_running():
    evaluator = Evaluator(document(experiments=[
        experiment("off", enabled=False, overrides={"qa": "b"}),
        experiment("off-paused", status="paused", enabled=False),
        experiment("off-shipped", status="completed", enabled=False, shipped_variant="b"),
    ]))
    off = evaluator.evaluate("off", "u")
    assert (off.variant, off.in_experiment, off.reason, off.payload) == ("control", False, "disabled_in_environment", {"c": 1})
    assert not off.records_exposure
    assert evaluator.evaluate("off", "qa").reason == "override"
    assert evaluator.evaluate("off-paused", "u").reason == "disabled_in_environment"
    assert evaluator.evaluate("off-shipped", "u").reason == "shipped"


def test_documents_without_the_new_fields_answer_as_before():
    spec = experiment()
    del spec["audiences"], spec["enabled"]
    bare = {k: v for k, v in document(experiments=[spec]).items() if k not in ("audiences", "flags")}
    evaluator = Evaluator(bare)
    assert evaluator.evaluate("exp", "u").reason == "assigned"
    assert evaluator.flags.keys == ()


# --- flags ----------------------------------------------------------------------------------------

def test_every_reason():
    evaluator = Evaluator(document(
        flags=[
            flag("force", {"id": "a", "type": "force", "audiences": [], "value": True}),
            flag("units", {"id": "b", "type": "units", "units": {"u": True}, "hashed_units": {}}),
            flag("rollout", rollout(100)),
            flag("exp", {"id": "d", "type": "experiment", "experiment": "exp", "values": {"control": 1, "b": 2}},
                 type="number", default=0),
            flag("default"),
            flag("disabled", {"id": "e", "type": "force", "audiences": [], "value": True}, enabled=False),
        ],
        experiments=[experiment()],
    ))
    seen = {evaluator.evaluate_flag(k, "u").reason for k in
            ("force", "units", "rollout", "exp", "default", "disabled", "unknown")}
    assert seen == set(FLAG_REASONS)
    assert evaluator.evaluate_flag("unknown", "u") == FlagResult("unknown", None, "unknown_flag")
    disabled = evaluator.evaluate_flag("disabled", "u")
    assert (disabled.value, disabled.rule_id) == (False, None)


def test_first_matching_rule_wins_and_non_matching_rules_fall_through():
    rules = [
        {"id": "r1", "type": "force", "audiences": ["eu"], "value": "eu"},
        {"id": "r2", "type": "units", "units": {"vip": "vip"}, "hashed_units": {}},
        rollout(0, value="never", rule_id="r3"),
        {"id": "r4", "type": "experiment", "experiment": "missing", "values": {"control": "x"}},
        {"id": "r5", "type": "experiment", "experiment": "exp", "values": {"b": "treated"}},
        {"id": "r6", "type": "force", "audiences": [], "value": "everyone"},
        {"id": "r7", "type": "force", "audiences": [], "value": "unreachable"},
    ]
    evaluator = Evaluator(document(flags=[flag("f", *rules, default="d", type="string")],
                                   experiments=[experiment()], audiences=EU))
    assert evaluator.evaluate_flag("f", "vip", {"country": "FR"}).rule_id == "r1"
    assert evaluator.evaluate_flag("f", "vip", {"country": "US"}).rule_id == "r2"
    decided = {evaluator.evaluate_flag("f", u).rule_id for u in UNITS[:200]}
    assert decided == {"r5", "r6"}  # control units fall through r5 (not listed) to r6
    for unit in UNITS[:200]:
        result = evaluator.evaluate_flag("f", unit)
        variant = evaluator.evaluate("exp", unit).variant
        assert (result.rule_id, result.variant) == (("r5", "b") if variant == "b" else ("r6", None))


def test_experiment_rule_marks_exposure_only_for_hashed_enrolment():
    evaluator = Evaluator(document(
        flags=[flag("f", {"id": "r", "type": "experiment", "experiment": "exp", "values": {"control": 0, "b": 1}},
                    type="number", default=-1)],
        experiments=[experiment(overrides={"qa": "b"}, targeting=[{"attribute": "ok", "operator": "exists", "values": []}])],
    ))
    assert evaluator.evaluate_flag("f", "u", {"ok": 1}).exposure is True
    forced = evaluator.evaluate_flag("f", "qa")
    assert (forced.reason, forced.value, forced.exposure) == ("experiment", 1, False)
    assert evaluator.evaluate_flag("f", "u", {}).reason == "default"  # targeting fails: falls through


@pytest.mark.parametrize("percents", [(0, 1, 5, 10, 33.33, 50, 99.99, 100), (0.01, 0.5, 20, 20.01, 75)])
def test_ramping_up_only_adds_units(percents):
    evaluators = [Evaluator(document(flags=[flag("f", rollout(p))])) for p in percents]
    previous: set[str] = set()
    for p, evaluator in zip(percents, evaluators, strict=True):
        on = {u for u in UNITS if evaluator.evaluate_flag("f", u).value is True}
        assert previous <= on
        assert on == {u for u in UNITS if bucket("flag", "ramp", u) < round(p * 100)}
        assert abs(len(on) / len(UNITS) - p / 100) < 0.05
        previous = on


def test_rollout_hash_is_independent_of_experiments_and_other_salts():
    """Namespace "flag" and the rule salt: the same salt as an experiment gives other buckets,
    and two salts split units independently (about 25 % on in both at 50 %)."""
    assert all(flag_bucket("exp", u) == bucket("flag", "exp", u) for u in UNITS[:50])
    same_as_experiment = sum(flag_bucket("exp", u) == bucket("exp", "exp", u) for u in UNITS)
    assert same_as_experiment < 10
    a = {u for u in UNITS if flag_bucket("salt-a", u) < 5000}
    b = {u for u in UNITS if flag_bucket("salt-b", u) < 5000}
    assert abs(len(a & b) / len(UNITS) - 0.25) < 0.04


def test_rollout_salt_defaults_to_the_flag_key():
    rule = rollout(50, salt=None)
    evaluator = Evaluator(document(flags=[flag("checkout", rule)]))
    for unit in UNITS[:100]:
        assert (evaluator.evaluate_flag("checkout", unit).reason == "rollout") is (flag_bucket("checkout", unit) < 5000)


def test_rollout_respects_audiences():
    evaluator = Evaluator(document(flags=[flag("f", rollout(100, audiences=["eu"]))], audiences=EU))
    assert evaluator.evaluate_flag("f", "u", {"country": "DE"}).reason == "rollout"
    assert evaluator.evaluate_flag("f", "u", {"country": "US"}).reason == "default"


def test_units_rule_hashed_in_the_client_document():
    full = document(flags=[flag("f", {"id": "r", "type": "units", "units": {"qa-1": True, "qa-2": False},
                                      "hashed_units": {}}, rollout(100, value=None, rule_id="all"))])
    client = client_document(full, secret_override_salt("s3cret"))
    [entry] = client["flags"]
    assert entry["unit_salt"] == secret_override_salt("s3cret")("flag:f") and len(entry["unit_salt"]) == 32
    assert entry["rules"][0]["units"] == {} and "qa-1" not in str(client)
    assert entry["rules"][0]["hashed_units"] == {override_hash(entry["unit_salt"], "qa-1"): True,
                                                 override_hash(entry["unit_salt"], "qa-2"): False}
    local, server = Evaluator(client), Evaluator(full)
    for unit in ("qa-1", "qa-2", "other"):
        assert local.evaluate_flag("f", unit) == server.evaluate_flag("f", unit)


def test_client_document_keeps_only_referenced_audiences():
    audiences = {**EU, "mobile": {"match": "all", "conditions": []}, "unused": {"match": "all", "conditions": []}}
    full = document(flags=[flag("f", rollout(10, audiences=["mobile"]))],
                    experiments=[experiment(audiences=["eu"]), experiment("draft", status="draft", audiences=["unused"])],
                    audiences=audiences)
    client = client_document(full, secret_override_salt("k"))
    assert set(client["audiences"]) == {"eu", "mobile"}
    assert client["environment"] == "production"


def test_results_are_shared_immutable_objects():
    evaluator = Evaluator(document(flags=[flag("f", {"id": "a", "type": "force", "audiences": [], "value": [1]})]))
    first, second = evaluator.evaluate_flag("f", "a"), evaluator.evaluate_flag("f", "b")
    assert first is second
    with pytest.raises(AttributeError):
        first.value = 2  # type: ignore[misc]


def test_evaluate_many_keeps_request_order_and_answers_unknown_keys():
    evaluator = Evaluator(document(flags=[flag("a"), flag("b", default=True)]))
    assert [r.key for r in evaluator.flags.evaluate_many("u")] == ["a", "b"]
    assert [(r.key, r.reason) for r in evaluator.flags.evaluate_many("u", {}, ["b", "zz", "a"])] == [
        ("b", "default"), ("zz", "unknown_flag"), ("a", "default")]


@pytest.mark.parametrize("bad", [
    [{"rules": []}], "flags", [3], [{"key": "f", "rules": [rollout("abc")]}],
    [{"key": "f", "rules": [rollout(float("inf"))]}],
])
def test_malformed_flags_make_a_document_error(bad):
    from assignment.evaluator import DocumentError

    with pytest.raises(DocumentError):
        Evaluator({**document(), "flags": bad})


def test_rollout_share_and_independence_from_experiments_are_statistically_sound():
    """At 30 % the share of units on is binomial(n, 0.3), and being on is independent of the
    variant an experiment with the same salt gives (namespaces "flag" vs "exp"), alpha 0.001."""
    from scipy import stats

    units = [f"unit-{i}" for i in range(20_000)]
    evaluator = Evaluator(document(flags=[flag("f", rollout(30, salt="same"))],
                                   experiments=[experiment("same")]))
    on = [evaluator.evaluate_flag("f", u).value is True for u in units]
    assert stats.binomtest(sum(on), len(units), 0.3).pvalue > 0.001
    table = [[0, 0], [0, 0]]
    for unit, is_on in zip(units, on, strict=True):
        table[int(is_on)][int(evaluator.evaluate("same", unit).variant == "b")] += 1
    assert stats.chi2_contingency(table).pvalue > 0.001


def test_flag_predicates_agree_with_the_explaining_checks():
    """Flag rules test membership with fast yes/no predicates; experiments use the checks that
    explain a failure. Over every targeting vector (each rule as a one-condition audience, and
    pairs in both modes) the two agree."""
    import json
    from pathlib import Path

    from assignment import vectors

    cases = json.loads(Path(vectors.PATH).read_text(encoding="utf-8"))["targeting"]
    extra = [({"attribute": "c", "operator": op, "values": values}, attrs)
             for op in ("in", "not_in", "equals", "not_equals")
             for values in (["CN", "US"], ["1", 1], [True], ["true"])
             for attrs in ({"c": "CN"}, {"c": "1"}, {"c": 1}, {"c": True}, {"c": "true"}, {"c": None}, {})]
    for rule, attributes in [(c["rule"], c["attributes"]) for c in cases] + extra:
        for match in ("all", "any"):
            for conditions in ([rule], [rule, {"attribute": "zz", "operator": "not_exists", "values": []}]):
                audiences = Audiences({"a": {"match": match, "conditions": conditions}})
                predicate = audiences.predicates(["a"])
                fast = predicate[0](attributes) if predicate else True
                assert fast is audiences.is_member("a", attributes), (match, conditions, attributes)
