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

from .reference import ref_assign, ref_bucket, ref_ranges, ref_rule, ref_semver_compare

VECTORS = json.loads(Path(vectors.PATH).read_text(encoding="utf-8"))


def test_vector_file_is_current():
    """Regenerating from the code gives the committed file (no silent algorithm change)."""
    assert vectors.build() == VECTORS


def test_vectors_cover_every_reason():
    reasons = {case["reason"] for case in VECTORS["cases"]}
    assert reasons == {
        "assigned", "override", "not_running", "targeting", "traffic_allocation",
        "layer_holdout", "layer_other_experiment", "shipped",
    }


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
