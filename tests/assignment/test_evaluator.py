"""Evaluator edge cases: malformed documents, unknown keys, degenerate experiments."""
import pytest

from assignment.evaluator import DocumentError, Evaluator, UnknownExperiment, variant_ranges
from assignment.hashing import percent_to_units


def doc(**experiment):
    spec = {
        "key": "e", "status": "running", "salt": "e", "traffic_allocation": 100,
        "layer": None, "layer_range": None,
        "variants": [
            {"key": "control", "weight": 50, "is_control": True, "payload": {"x": 0}},
            {"key": "b", "weight": 50, "is_control": False, "payload": {"x": 1}},
        ],
        "targeting": [], "overrides": {}, "shipped_variant": None,
    }
    spec.update(experiment)
    return {"schema_version": 1, "hash": {"algorithm": "sha256", "buckets": 10000}, "layers": {},
            "experiments": [spec]}


@pytest.mark.parametrize(("percent", "units"), [
    (0, 0), (0.01, 1), (33.33, 3333), (33.34, 3334), (50, 5000), ("12.5", 1250), (100, 10000),
    (-5, 0), (150, 10000), (0.015, 2), (99.995, 10000),
])
def test_percent_to_units(percent, units):
    assert percent_to_units(percent) == units


def test_ranges_cover_exactly_the_allocation():
    for weights in ([50, 50], [33.33, 33.33, 33.34], [1, 2, 97], [10] * 10):
        for allocation in (0, 1, 12.34, 50, 100):
            ranges = variant_ranges(weights, allocation)
            covered = sum(end - start for start, end in ranges)
            assert covered <= 10000 * allocation / 100 + 1e-9
            assert covered >= 10000 * allocation / 100 - len(weights)
            assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_weights_need_not_sum_to_100():
    assert variant_ranges([1, 1], 100) == [(0, 5000), (5000, 10000)]
    assert variant_ranges([0, 0], 100) == [(0, 0), (0, 0)]


def test_unknown_experiment():
    evaluator = Evaluator(doc())
    with pytest.raises(UnknownExperiment):
        evaluator.evaluate("nope", "u")
    with pytest.raises(UnknownExperiment):
        evaluator.evaluate_many("u", {}, ["e", "nope"])
    with pytest.raises(UnknownExperiment):
        evaluator.experiment("nope")


@pytest.mark.parametrize("document", [
    [],
    {"schema_version": 2},
    {"hash": {"algorithm": "md5", "buckets": 10000}},
    {"hash": {"algorithm": "sha256", "buckets": 100}},
    doc(layer="missing"),
    {"experiments": [{"status": "running"}]},
])
def test_malformed_documents_are_refused(document):
    with pytest.raises(DocumentError):
        Evaluator(document)


def test_running_experiment_without_layer_range_enrols_nobody():
    document = doc(layer="l", layer_range=None)
    document["layers"] = {"l": {"salt": "l", "holdout_percent": 0}}
    answers = {Evaluator(document).evaluate("e", f"u-{i}").reason for i in range(50)}
    assert answers == {"layer_other_experiment"}


def test_override_to_an_unknown_variant_is_ignored():
    evaluator = Evaluator(doc(overrides={"qa": "ghost"}))
    assert evaluator.evaluate("e", "qa").reason == "assigned"


def test_shipped_unknown_variant_falls_back_to_not_running():
    evaluator = Evaluator(doc(status="completed", shipped_variant="ghost"))
    assert evaluator.evaluate("e", "u").reason == "not_running"


def test_answer_serialises():
    answer = Evaluator(doc()).evaluate("e", "u")
    assert set(answer.as_dict()) == {"experiment", "variant", "in_experiment", "reason", "detail", "payload"}
    assert "Assignment(" in repr(answer)
