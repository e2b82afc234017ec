"""The committed vectors pin the algorithm: the evaluator, an independent transcription of
the spec and raw SHA-256 must all reproduce every answer."""
import hashlib
import json
from pathlib import Path

import pytest

from assignment import vectors
from assignment.evaluator import Evaluator, variant_ranges
from assignment.hashing import bucket
from assignment.targeting import OPERATORS, matches

from .reference import (
    ref_assign,
    ref_assign_hashed,
    ref_bucket,
    ref_flag,
    ref_ranges,
    ref_rule,
    ref_semver_compare,
)

VECTORS = json.loads(Path(vectors.PATH).read_text(encoding="utf-8"))


def test_vector_file_is_current():
    """Regenerating from the code gives the committed file (no silent algorithm change)."""
    assert vectors.build() == VECTORS


def test_vectors_cover_every_reason():
    reasons = {case["reason"] for case in VECTORS["cases"]}
    assert reasons == {
        "assigned", "override", "not_running", "targeting", "traffic_allocation",
        "layer_holdout", "layer_other_experiment", "shipped", "disabled_in_environment",
    }


@pytest.mark.parametrize(("cases", "document"), [("flag_cases", "document"), ("client_flag_cases", "client_document")])
def test_flag_vectors_evaluator_and_reference(cases, document):
    """Every flag case: the evaluator and the spec's transcription give the committed answer,
    and every reason and every rule kind decides at least one case."""
    doc = VECTORS[document]
    evaluator = Evaluator(doc)
    for case in VECTORS[cases]:
        expected = (case["value"], case["reason"], case["rule_id"], case["variant"])
        got = evaluator.evaluate_flag(case["flag"], case["unit_id"], case["attributes"])
        assert (got.value, got.reason, got.rule_id, got.variant) == expected, case
        assert ref_flag(doc, case["flag"], case["unit_id"], case["attributes"]) == expected, case
    vectors.check_flag_coverage(VECTORS[cases], doc)


def test_client_flag_cases_equal_the_full_documents_answers():
    """Hashing the listed units and leaving out unused audiences changes no answer."""
    strip = [{k: c[k] for k in ("flag", "unit_id", "value", "reason", "rule_id", "variant")}
             for c in VECTORS["flag_cases"]]
    assert strip == [{k: c[k] for k in strip[0]} for c in VECTORS["client_flag_cases"]]
    client = VECTORS["client_document"]
    assert "unused" not in client["audiences"] and "unused" in VECTORS["document"]["audiences"]
    assert all(not r["units"] for f in client["flags"] for r in f["rules"] if r["type"] == "units")
    assert "qa-user-1" not in json.dumps(client["flags"])


def test_ramp_vectors_only_add_units():
    """The ramp flags share one salt at 0, 10, 50, 100 %: a unit on at one step stays on."""
    on = {}
    for case in VECTORS["flag_cases"]:
        if case["flag"] in vectors.RAMP_FLAGS:
            on.setdefault(case["flag"], set())
            if case["value"] is True:
                on[case["flag"]].add(case["unit_id"])
    steps = [on[k] for k in vectors.RAMP_FLAGS]
    assert steps[0] == set() and len(steps[-1]) == len(vectors.UNIT_IDS)
    assert all(a < b for a, b in zip(steps, steps[1:], strict=False))


def test_client_case_vectors_reference():
    """The client document's answers, hashed overrides included, follow the spec's transcription."""
    doc = VECTORS["client_document"]
    for case in VECTORS["client_cases"]:
        expected = (case["variant"], case["in_experiment"], case["reason"])
        assert ref_assign_hashed(doc, case["experiment"], case["unit_id"], case["attributes"]) == expected, case


@pytest.mark.parametrize("case", VECTORS["hash"], ids=lambda c: f"{c['namespace']}:{c['salt']}:{c['unit_id'][:10]}")
def test_hash_vectors(case):
    data = bytes.fromhex(case["input_hex"])
    assert data == f"{case['namespace']}:{case['salt']}:{case['unit_id']}".encode()
    assert hashlib.sha256(data).hexdigest() == case["sha256_hex"]
    assert int(case["sha256_hex"][:16], 16) % 10000 == case["bucket"]
    assert bucket(case["namespace"], case["salt"], case["unit_id"]) == case["bucket"]
    assert ref_bucket(case["namespace"], case["salt"], case["unit_id"]) == case["bucket"]


def test_known_bucket_is_pinned():
    # Hand-checkable: printf 'exp:checkout-button:u-123' | sha256sum -> first 16 hex digits.
    digest = hashlib.sha256(b"exp:checkout-button:u-123").hexdigest()
    assert bucket("exp", "checkout-button", "u-123") == int(digest[:16], 16) % 10000


@pytest.mark.parametrize("case", VECTORS["ranges"], ids=str)
def test_range_vectors(case):
    expected = [tuple(r) for r in case["ranges"]]
    assert variant_ranges(case["weights"], case["traffic_allocation"]) == expected
    assert ref_ranges(case["weights"], case["traffic_allocation"]) == expected


def test_case_vectors_evaluator_and_reference():
    document = VECTORS["document"]
    evaluator = Evaluator(document)
    layers = document["layers"]
    specs = {e["key"]: e for e in document["experiments"]}
    for case in VECTORS["cases"]:
        spec = specs[case["experiment"]]
        expected = (case["variant"], case["in_experiment"], case["reason"])
        answer = evaluator.evaluate(case["experiment"], case["unit_id"], case["attributes"])
        assert (answer.variant, answer.in_experiment, answer.reason) == expected, case
        assert ref_assign(document, case["experiment"], case["unit_id"], case["attributes"]) == expected, case
        assert ref_bucket("exp", spec["salt"], case["unit_id"]) == case["experiment_bucket"]
        if spec["layer"]:
            assert ref_bucket("layer", layers[spec["layer"]]["salt"], case["unit_id"]) == case["layer_bucket"]


def test_evaluator_works_from_the_json_text_alone():
    text = json.dumps(VECTORS["document"])
    evaluator = Evaluator.from_json(text)
    case = VECTORS["cases"][0]
    assert evaluator.evaluate(case["experiment"], case["unit_id"], case["attributes"]).variant == case["variant"]


def test_targeting_vectors_evaluator_and_reference():
    """Every operator's single-rule vectors: the evaluator and the spec's transcription agree."""
    cases = VECTORS["targeting"]
    assert {c["rule"]["operator"] for c in cases} >= set(OPERATORS) - {
        "in", "not_in", "not_equals", "contains", "exists", "not_exists"}  # those are covered by `cases`
    for case in cases:
        assert matches([case["rule"]], case["attributes"]) is case["passes"], case
        assert ref_rule(case["rule"], case["attributes"]) is case["passes"], case
    assert sum(c["passes"] for c in cases) > 100 and sum(not c["passes"] for c in cases) > 100


def test_semver_order_agrees_with_the_semver_library():
    """The vectors' version order is semver.org's, as implemented by the ``semver`` package."""
    semver = pytest.importorskip("semver")
    order = vectors.SEMVER_ORDER
    for a in order:
        for b in order:
            expected = semver.Version.parse(a).compare(b)
            assert ref_semver_compare(a, b) == expected, (a, b)
            rule = {"attribute": "v", "operator": "semver_lt", "values": [b]}
            assert matches([rule], {"v": a}) is (expected < 0), (a, b)
    for bad in vectors.SEMVER_INVALID:
        if isinstance(bad, str) and bad.isascii():
            assert not semver.Version.is_valid(bad), bad
