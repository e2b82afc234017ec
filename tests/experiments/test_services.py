"""Every invariant of experiment definitions, through the one service layer."""
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from experiments import services
from experiments.models import Experiment, Layer

from .conftest import experiment_data


def errors_of(excinfo) -> dict:
    return excinfo.value.message_dict


def test_create_experiment_with_children(make_experiment):
    exp = make_experiment()
    assert exp.status == "draft"
    assert exp.salt == "checkout-button"
    assert [v.key for v in exp.variants.all()] == ["control", "green"]
    assert exp.control.key == "control"
    assert exp.variants.get(key="green").payload == {"color": "green"}
    assert exp.experiment_metrics.get().role == "primary"
    assert exp.targeting_rules.get().values == ["CN", "US"]
    assert exp.history.first().history_change_reason == "created by tester"


@pytest.mark.parametrize(
    "variants, message",
    [
        ([{"key": "control", "weight": 100, "is_control": True}], "at least two variants"),
        ([{"key": "a", "weight": 50}, {"key": "b", "weight": 50}], "Exactly one variant must be the control (found 0)"),
        ([{"key": "a", "weight": 50, "is_control": True}, {"key": "b", "weight": 50, "is_control": True}], "found 2"),
        ([{"key": "a", "weight": 50, "is_control": True}, {"key": "b", "weight": 40}], "sum to 100 (they sum to 90)"),
        ([{"key": "a", "weight": 100, "is_control": True}, {"key": "b", "weight": 0}], "positive weight"),
        ([{"key": "a", "weight": 50, "is_control": True}, {"key": "a", "weight": 50}], "repeated: a"),
    ],
)
def test_variant_invariants(metrics, variants, message):
    with pytest.raises(ValidationError) as excinfo:
        services.create_experiment(experiment_data(variants=variants))
    assert any(message in m for m in errors_of(excinfo)["variants"])
    assert not Experiment.objects.exists()


def test_unique_experiment_key(make_experiment):
    make_experiment()
    with pytest.raises(ValidationError) as excinfo:
        make_experiment()
    assert "key" in errors_of(excinfo)


def test_duplicate_metric_rejected(make_experiment):
    with pytest.raises(ValidationError) as excinfo:
        make_experiment(metrics=[{"metric": "purchase", "role": "primary"}, {"metric": "purchase", "role": "guardrail"}])
    assert "metrics" in errors_of(excinfo)


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"attribute": "country", "operator": "regex", "values": ["x"]}, "unknown operator"),
        ({"attribute": "country", "operator": "equals", "values": ["a", "b"]}, "exactly one value"),
        ({"attribute": "country", "operator": "in", "values": []}, "at least one value"),
        ({"attribute": "country", "operator": "exists", "values": ["x"]}, "takes no values"),
        ({"attribute": "age", "operator": "gt", "values": ["old"]}, "compares numbers"),
        ({"attribute": "country", "operator": "in", "values": [{"a": 1}]}, "list of strings"),
        ({"attribute": "", "operator": "exists", "values": []}, "attribute is required"),
    ],
)
def test_targeting_rules_are_validated(make_experiment, rule, message):
    with pytest.raises(ValidationError) as excinfo:
        make_experiment(targeting=[rule])
    assert any(message in m for m in errors_of(excinfo)["targeting"])


def test_start_needs_primary_metric(make_experiment):
    exp = make_experiment(metrics=[{"metric": "revenue", "role": "secondary"}])
    with pytest.raises(ValidationError) as excinfo:
        services.start_experiment(exp)
    assert "primary metric" in errors_of(excinfo)["metrics"][0]
    exp.refresh_from_db()
    assert exp.status == "draft"


def test_status_moves_only_along_the_lifecycle(make_experiment):
    exp = make_experiment()
    with pytest.raises(ValidationError) as excinfo:
        services.pause_experiment(exp)
    assert "status" in errors_of(excinfo)
    with pytest.raises(ValidationError):
        services.complete_experiment(exp)
    with pytest.raises(ValidationError):
        services.resume_experiment(exp)

    exp = services.start_experiment(exp, actor="pm")
    assert exp.status == "running" and exp.started_at is not None
    with pytest.raises(ValidationError):
        services.start_experiment(exp)
    with pytest.raises(ValidationError):
        services.archive_experiment(exp)
    exp = services.pause_experiment(exp)
    assert exp.status == "paused" and exp.paused_at is not None
    exp = services.resume_experiment(exp)
    assert exp.status == "running" and exp.paused_at is None
    exp = services.complete_experiment(exp, shipped_variant="green")
    assert exp.status == "completed" and exp.ended_at is not None
    assert exp.shipped_variant.key == "green"
    with pytest.raises(ValidationError):
        services.start_experiment(exp)
    exp = services.archive_experiment(exp)
    assert exp.status == "archived" and exp.archived_at is not None
    with pytest.raises(ValidationError) as excinfo:
        services.update_experiment(exp, {"name": "x"})
    assert "status" in errors_of(excinfo)
    reasons = [h.history_change_reason for h in exp.history.order_by("history_date")]
    assert "started by pm" in reasons and any(r and r.startswith("completed") for r in reasons)


def test_complete_with_unknown_shipped_variant(make_experiment):
    exp = services.start_experiment(make_experiment())
    with pytest.raises(ValidationError) as excinfo:
        services.complete_experiment(exp, shipped_variant="purple")
    assert "shipped_variant" in errors_of(excinfo)


def test_locks_while_running(make_experiment):
    exp = services.start_experiment(make_experiment(traffic_allocation=50))
    for change in (
        {"key": "renamed"},
        {"salt": "other"},
        {"variants": [{"key": "control", "weight": 60, "is_control": True}, {"key": "green", "weight": 40}]},
        {"traffic_allocation": Decimal("40")},
    ):
        with pytest.raises(ValidationError) as excinfo:
            services.update_experiment(exp, change)
        assert set(errors_of(excinfo)) == {next(iter(change))}
    # Growing traffic and editing texts are fine.
    exp = services.update_experiment(exp, {"traffic_allocation": Decimal("80"), "name": "New name"})
    assert exp.traffic_allocation == Decimal("80")
    assert [v.weight for v in exp.variants.all()] == [Decimal("50.00"), Decimal("50.00")]


def test_key_and_salt_stay_locked_after_completion(make_experiment):
    exp = services.complete_experiment(services.start_experiment(make_experiment()))
    with pytest.raises(ValidationError) as excinfo:
        services.update_experiment(exp, {"key": "other", "salt": "x"})
    assert set(errors_of(excinfo)) == {"key", "salt"}


def test_draft_can_change_everything(make_experiment):
    exp = make_experiment()
    exp = services.update_experiment(exp, {
        "key": "renamed",
        "variants": [{"key": "control", "weight": 34, "is_control": True}, {"key": "b", "weight": 33}, {"key": "c", "weight": 33}],
        "traffic_allocation": 10,
    })
    assert exp.key == "renamed" and exp.variants.count() == 3


def test_layer_capacity(make_experiment, layer):
    # holdout 10 %: 90 % left for experiments.
    make_experiment(key="a", layer=layer, layer_share=60)
    with pytest.raises(ValidationError) as excinfo:
        make_experiment(key="b", layer=layer, layer_share=40)
    assert "30 % free" in errors_of(excinfo)["layer_share"][0]
    make_experiment(key="c", layer=layer, layer_share=30)
    with pytest.raises(ValidationError) as excinfo:
        make_experiment(key="d", layer=layer)
    assert "layer_share" in errors_of(excinfo)
    with pytest.raises(ValidationError) as excinfo:
        make_experiment(key="e", layer_share=10)
    assert "layer_share" in errors_of(excinfo)


def test_layer_ranges_do_not_overlap_and_are_freed(make_experiment, layer):
    a = services.start_experiment(make_experiment(key="a", layer=layer, layer_share=40))
    b = services.start_experiment(make_experiment(key="b", layer=layer, layer_share=50))
    assert (a.layer_bucket_start, a.layer_bucket_end) == (1000, 5000)
    assert (b.layer_bucket_start, b.layer_bucket_end) == (5000, 10000)
    a = services.complete_experiment(a)
    assert a.layer_bucket_start is None
    c = services.start_experiment(make_experiment(key="c", layer=layer, layer_share=30))
    assert (c.layer_bucket_start, c.layer_bucket_end) == (1000, 4000)


def test_layer_locked_while_experiments_run(make_experiment, layer):
    services.start_experiment(make_experiment(key="a", layer=layer, layer_share=40))
    with pytest.raises(ValidationError) as excinfo:
        services.save_layer(layer, {"holdout_percent": Decimal("20")})
    assert "holdout_percent" in errors_of(excinfo)
    with pytest.raises(ValidationError) as excinfo:
        services.save_layer(layer, {"salt": "new"})
    assert "salt" in errors_of(excinfo)


def test_layer_holdout_cannot_squeeze_experiments(make_experiment, layer):
    make_experiment(key="a", layer=layer, layer_share=80)
    with pytest.raises(ValidationError) as excinfo:
        services.save_layer(layer, {"holdout_percent": Decimal("30")})
    assert "holdout_percent" in errors_of(excinfo)


def test_ratio_metric_needs_denominator(db):
    from experiments.models import Metric

    with pytest.raises(ValidationError) as excinfo:
        services.save_metric(Metric(), {"key": "rpo", "name": "Revenue per order", "event": "purchase", "kind": "ratio"})
    assert "denominator_event" in errors_of(excinfo)
    m = services.save_metric(Metric(), {"key": "rpo", "name": "RPO", "event": "purchase", "kind": "ratio", "denominator_event": "purchase"})
    assert m.pk


def test_allowed_actions(make_experiment):
    exp = make_experiment()
    assert services.allowed_actions(exp) == ["start"]
    exp = services.start_experiment(exp)
    assert services.allowed_actions(exp) == ["pause", "complete"]
    exp = services.pause_experiment(exp)
    assert services.allowed_actions(exp) == ["resume", "complete"]


def test_layer_salt_defaults_to_key(db):
    layer = services.save_layer(Layer(), {"key": "home", "name": "Home"})
    assert layer.salt == "home"


def test_start_needs_an_analysis_plan(make_experiment):
    """Issue 11: without a planned size/duration or sequential testing no result can be called,
    so starting is refused (naming planned_sample_size)."""
    exp = make_experiment(planned_sample_size=None)
    with pytest.raises(ValidationError) as excinfo:
        services.start_experiment(exp)
    assert "sequential testing" in errors_of(excinfo)["planned_sample_size"][0]
    exp.refresh_from_db()
    assert exp.status == "draft"
    for key, fields in (("by-duration", {"planned_duration_days": 14}), ("by-seq", {"sequential_testing": True})):
        other = make_experiment(key=key, planned_sample_size=None, **fields)
        assert services.start_experiment(other).status == "running"


def test_guardrail_margin_is_stored_and_validated(make_experiment):
    exp = make_experiment(metrics=[{"metric": "purchase", "role": "primary"},
                                   {"metric": "latency", "role": "guardrail", "non_inferiority_margin": 0.05}])
    assert [em.non_inferiority_margin for em in exp.experiment_metrics.all()] == [0.02, 0.05]
    with pytest.raises(ValidationError) as excinfo:
        make_experiment(key="bad-margin", metrics=[{"metric": "purchase", "role": "primary"},
                                                   {"metric": "latency", "role": "guardrail", "non_inferiority_margin": 0}])
    assert "non_inferiority_margin" in errors_of(excinfo)["metrics"][0]
