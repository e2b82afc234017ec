"""Statistical and structural properties of assignment, each with a test that could fail."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from assignment.evaluator import Evaluator
from assignment.hashing import BUCKETS, prefix_bucketer

ALPHA = 0.001


def experiment(key, *, weights=(50, 50), allocation=100.0, status="running", layer=None,
               layer_range=None, targeting=(), overrides=None, shipped=None, salt=None):
    names = ["control"] + [f"t{i}" for i in range(1, len(weights))]
    return {
        "key": key, "status": status, "salt": salt or key, "traffic_allocation": allocation,
        "layer": layer, "layer_range": layer_range,
        "variants": [
            {"key": n, "weight": w, "is_control": i == 0, "payload": {"v": n}}
            for i, (n, w) in enumerate(zip(names, weights, strict=True))
        ],
        "targeting": list(targeting), "overrides": overrides or {}, "shipped_variant": shipped,
    }


def document(*experiments, layers=None):
    return {"schema_version": 1, "version": "t", "hash": {"algorithm": "sha256", "buckets": BUCKETS},
            "layers": layers or {}, "experiments": list(experiments)}


def units(n, prefix="user-"):
    return [f"{prefix}{i}" for i in range(n)]


# --- uniform -----------------------------------------------------------------------------------

def test_buckets_are_uniform_over_a_million_ids():
    bucketer = prefix_bucketer("exp", "uniformity")
    counts = np.bincount([bucketer(u) for u in units(1_000_000)], minlength=BUCKETS)
    assert stats.chisquare(counts).pvalue > ALPHA


def test_variant_counts_match_weights_over_a_million_ids():
    weights = (50.0, 30.0, 20.0)
    evaluator = Evaluator(document(experiment("uniform", weights=weights)))
    evaluate = evaluator.evaluate
    seen = {"control": 0, "t1": 0, "t2": 0}
    for unit in units(1_000_000):
        seen[evaluate("uniform", unit).variant] += 1
    observed = np.array(list(seen.values()))
    expected = np.array(weights) / 100 * observed.sum()
    assert observed.sum() == 1_000_000
    assert stats.chisquare(observed, expected).pvalue > ALPHA


def test_chi_square_would_catch_a_skewed_assignment():
    """The test above can fail: a 50.5/49.5 split over a million ids is rejected."""
    observed = np.array([505_000, 495_000])
    assert stats.chisquare(observed, [500_000, 500_000]).pvalue < ALPHA


def test_partial_allocation_enrols_the_right_share_in_the_right_split():
    evaluator = Evaluator(document(experiment("part", weights=(33.33, 33.33, 33.34), allocation=30)))
    answers = [evaluator.evaluate("part", u) for u in units(200_000)]
    enrolled = [a for a in answers if a.in_experiment]
    assert stats.binomtest(len(enrolled), len(answers), 0.30).pvalue > ALPHA
    counts = np.array([sum(a.variant == k for a in enrolled) for k in ("control", "t1", "t2")])
    assert stats.chisquare(counts, np.array([1, 1, 1]) / 3 * len(enrolled)).pvalue > ALPHA
    assert all(a.reason == "traffic_allocation" for a in answers if not a.in_experiment)


# --- independent -------------------------------------------------------------------------------

def _contingency(evaluator, a, b, n):
    keys_a = {k: i for i, k in enumerate(v["key"] for v in evaluator.experiment(a)["variants"])}
    keys_b = {k: i for i, k in enumerate(v["key"] for v in evaluator.experiment(b)["variants"])}
    table = np.zeros((len(keys_a) + 1, len(keys_b) + 1), dtype=int)
    for unit in units(n):
        x, y = evaluator.evaluate_many(unit, {}, [a, b])
        table[keys_a[x.variant] if x.in_experiment else -1, keys_b[y.variant] if y.in_experiment else -1] += 1
    return table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]


def test_variants_of_two_experiments_are_independent():
    evaluator = Evaluator(document(
        experiment("first", weights=(50, 50)),
        experiment("second", weights=(20, 30, 50)),
    ))
    table = _contingency(evaluator, "first", "second", 200_000)
    assert table.shape == (2, 3)
    assert stats.chi2_contingency(table).pvalue > ALPHA


def test_contingency_test_detects_dependence_when_salts_collide():
    """Sanity check of the method: two experiments sharing a salt are perfectly dependent."""
    evaluator = Evaluator(document(
        experiment("first", salt="same"), experiment("second", salt="same"),
    ))
    assert stats.chi2_contingency(_contingency(evaluator, "first", "second", 20_000)).pvalue < ALPHA


def test_experiments_sharing_a_layer_are_dependent_by_design():
    layers = {"l": {"salt": "l", "holdout_percent": 0}}
    evaluator = Evaluator(document(
        experiment("first", layer="l", layer_range=[0, 5000]),
        experiment("second", layer="l", layer_range=[5000, 10000]),
        layers=layers,
    ))
    table = _contingency(evaluator, "first", "second", 20_000)
    assert stats.chi2_contingency(table).pvalue < ALPHA


def test_layer_position_says_nothing_about_variant():
    """Inside its layer range, an experiment's variant is independent of the layer bucket."""
    layers = {"l": {"salt": "l", "holdout_percent": 0}}
    evaluator = Evaluator(document(experiment("e", layer="l", layer_range=[0, 10000]), layers=layers))
    layer_bucket = prefix_bucketer("layer", "l")
    table = np.zeros((2, 2), dtype=int)
    for unit in units(100_000):
        table[layer_bucket(unit) < 5000, evaluator.evaluate("e", unit).variant == "control"] += 1
    assert stats.chi2_contingency(table).pvalue > ALPHA


# --- stable on ramp-up ------------------------------------------------------------------------

@pytest.mark.parametrize("weights", [(50, 50), (33.33, 33.33, 33.34), (10, 20, 70)])
def test_raising_allocation_only_adds_units(weights):
    population = units(40_000)
    previous: dict[str, str] = {}
    for allocation in (0, 0.5, 1, 5, 10, 25, 33.33, 50, 75, 99.99, 100):
        evaluator = Evaluator(document(experiment("ramp", weights=weights, allocation=allocation)))
        current = {}
        for unit in population:
            answer = evaluator.evaluate("ramp", unit)
            if answer.in_experiment:
                current[unit] = answer.variant
        for unit, variant in previous.items():
            assert current.get(unit) == variant, (allocation, unit)
        assert len(current) >= len(previous)
        previous = current
    assert len(previous) == len(population)


# --- layers -------------------------------------------------------------------------------------

def test_layer_experiments_never_share_a_unit_and_holdout_enters_none():
    layers = {"checkout": {"salt": "checkout", "holdout_percent": 5.0}}
    evaluator = Evaluator(document(
        experiment("a", layer="checkout", layer_range=[500, 3000]),
        experiment("b", layer="checkout", layer_range=[3000, 7000], allocation=50),
        experiment("c", layer="checkout", layer_range=[7000, 10000]),
        experiment("free"),  # outside the layer: independent of it
        layers=layers,
    ))
    layer_bucket = prefix_bucketer("layer", "checkout")
    enrolled = {"a": 0, "b": 0, "c": 0}
    held_out = 0
    population = units(100_000)
    for unit in population:
        answers = {a.experiment: a for a in evaluator.evaluate_many(unit)}
        inside = [k for k in ("a", "b", "c") if answers[k].in_experiment]
        assert len(inside) <= 1
        for k in inside:
            enrolled[k] += 1
        if layer_bucket(unit) < 500:
            held_out += 1
            assert inside == []
            assert {answers[k].reason for k in "abc"} == {"layer_holdout"}
        assert answers["free"].in_experiment
    n = len(population)
    assert stats.binomtest(held_out, n, 0.05).pvalue > ALPHA
    assert stats.binomtest(enrolled["a"], n, 0.25).pvalue > ALPHA
    assert stats.binomtest(enrolled["b"], n, 0.20).pvalue > ALPHA
    assert stats.binomtest(enrolled["c"], n, 0.30).pvalue > ALPHA


def test_unit_in_another_experiments_range_gets_that_reason():
    layers = {"l": {"salt": "l", "holdout_percent": 0}}
    evaluator = Evaluator(document(experiment("a", layer="l", layer_range=[0, 5000]), layers=layers))
    layer_bucket = prefix_bucketer("layer", "l")
    unit = next(u for u in units(100) if layer_bucket(u) >= 5000)
    answer = evaluator.evaluate("a", unit)
    assert (answer.in_experiment, answer.reason, answer.variant) == (False, "layer_other_experiment", "control")


# --- overrides, status, shipping --------------------------------------------------------------

def test_override_wins_over_hashing_targeting_and_allocation():
    targeting = [{"attribute": "country", "operator": "equals", "values": ["CN"]}]
    evaluator = Evaluator(document(experiment(
        "e", allocation=0, targeting=targeting, overrides={"qa-1": "t1", "qa-2": "control"}
    )))
    for unit, variant in (("qa-1", "t1"), ("qa-2", "control")):
        answer = evaluator.evaluate("e", unit, {"country": "DE"})
        assert (answer.variant, answer.in_experiment, answer.reason) == (variant, True, "override")
        assert answer.payload == {"v": variant}
        assert not answer.records_exposure
    assert evaluator.evaluate("e", "someone", {"country": "CN"}).reason == "traffic_allocation"


@pytest.mark.parametrize("status", ["draft", "paused"])
def test_overrides_apply_before_launch_but_do_not_enrol(status):
    evaluator = Evaluator(document(experiment("e", status=status, overrides={"qa": "t1"})))
    qa = evaluator.evaluate("e", "qa")
    assert (qa.variant, qa.in_experiment, qa.reason) == ("t1", False, "override")
    other = evaluator.evaluate("e", "u")
    assert (other.variant, other.in_experiment, other.reason, other.payload) == (
        "control", False, "not_running", {"v": "control"}
    )
    assert status in other.detail
    assert evaluator.running_keys == ()


@pytest.mark.parametrize("status", ["completed", "archived"])
def test_finished_experiments(status):
    shipped = Evaluator(document(experiment("e", status=status, shipped="t1", overrides={"qa": "control"})))
    for unit in ("u-1", "u-2", "qa"):
        answer = shipped.evaluate("e", unit)
        assert (answer.variant, answer.in_experiment, answer.reason, answer.payload) == (
            "t1", False, "shipped", {"v": "t1"}
        )
    plain = Evaluator(document(experiment("e", status=status)))
    answer = plain.evaluate("e", "u-1")
    assert (answer.variant, answer.in_experiment, answer.reason) == ("control", False, "not_running")


def test_evaluate_many_defaults_to_running_experiments():
    evaluator = Evaluator(document(
        experiment("a"), experiment("b", status="paused"), experiment("c"),
    ))
    assert [a.experiment for a in evaluator.evaluate_many("u")] == ["a", "c"]
    assert [a.experiment for a in evaluator.evaluate_many("u", {}, ["b"])] == ["b"]


def test_determinism_across_evaluator_instances():
    doc = document(experiment("a", weights=(10, 90)))
    first, second = Evaluator(doc), Evaluator(doc)
    for unit in units(1000):
        assert first.evaluate("a", unit) == second.evaluate("a", unit)
