"""The Python SDK reproduces every vector of assignment/vectors.json, read at test time so
vectors added later (operators, phases, hashed overrides) are checked too."""
import json

import pytest
from abplatform_sdk import Evaluator, bucket, override_hash, variant_ranges
from abplatform_sdk.evaluator import DocumentError, rule_passes

from .conftest import VECTORS

DATA = json.loads(VECTORS.read_text(encoding="utf-8"))


def test_hash_vectors():
    for case in DATA["hash"]:
        assert bucket(case["namespace"], case["salt"], case["unit_id"]) == case["bucket"], case


def test_range_vectors():
    for case in DATA["ranges"]:
        got = [list(r) for r in variant_ranges(case["weights"], case["traffic_allocation"])]
        assert got == case["ranges"], case


def test_case_vectors():
    evaluator = Evaluator(DATA["document"])
    assert len(DATA["cases"]) > 50
    for case in DATA["cases"]:
        answer = evaluator.evaluate(case["experiment"], case["unit_id"], case["attributes"])
        got = (answer.variant, answer.in_experiment, answer.reason)
        assert got == (case["variant"], case["in_experiment"], case["reason"]), case


def test_case_vectors_with_evaluate_many():
    """The layer-bucket cache of evaluate_many gives the same answers as one by one."""
    evaluator = Evaluator(DATA["document"])
    for case in DATA["cases"]:
        [answer] = evaluator.evaluate_many(case["unit_id"], case["attributes"], [case["experiment"]])
        assert (answer.variant, answer.reason) == (case["variant"], case["reason"]), case


@pytest.mark.skipif("targeting" not in DATA, reason="no targeting vectors in this version")
def test_targeting_vectors():
    for case in DATA["targeting"]:
        assert rule_passes(case["rule"], case["attributes"]) is case["passes"], case


@pytest.mark.skipif("overrides" not in DATA, reason="no hashed-override vectors in this version")
def test_hashed_override_vectors():
    for case in DATA["overrides"]:
        assert override_hash(case["override_salt"], case["unit_id"]) == case["hash"], case
    client_doc = DATA["client_document"]
    evaluator = Evaluator(client_doc)
    for case in DATA["client_cases"]:
        answer = evaluator.evaluate(case["experiment"], case["unit_id"], case["attributes"])
        assert (answer.variant, answer.in_experiment, answer.reason) == (
            case["variant"], case["in_experiment"], case["reason"]), case


@pytest.mark.parametrize("document", [
    [], {"schema_version": 2, "experiments": []},
    {"schema_version": 1, "hash": {"algorithm": "md5", "buckets": 10000}, "experiments": []},
    {"schema_version": 1, "experiments": "nope"},
    {"schema_version": 1, "experiments": [{"key": "a"}]},
    {"schema_version": 1, "experiments": [{"key": "a", "status": "running", "layer": "missing"}]},
])
def test_refuses_bad_documents(document):
    with pytest.raises(DocumentError):
        Evaluator(document)


def test_unknown_experiment_answers_instead_of_failing():
    answer = Evaluator(DATA["document"]).evaluate("no-such", "u-1")
    assert (answer.variant, answer.in_experiment, answer.reason) == (None, False, "unknown_experiment")


@pytest.mark.parametrize(("cases", "document"), [("flag_cases", "document"), ("client_flag_cases", "client_document")])
def test_flag_vectors(cases, document):
    """Every flag case from the full and the client-safe document (section 6a)."""
    evaluator = Evaluator(DATA[document])
    assert {c["reason"] for c in DATA[cases]} >= {"force", "units", "rollout", "experiment", "default",
                                                  "disabled", "unknown_flag"}
    for case in DATA[cases]:
        got = evaluator.flags.evaluate(case["flag"], case["unit_id"], case["attributes"])
        assert (got.value, got.reason, got.rule_id, got.variant) == (
            case["value"], case["reason"], case["rule_id"], case["variant"]), case
