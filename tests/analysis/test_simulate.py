"""The ``simulate`` and ``seed_demo`` commands: realistic, seeded, bulk, idempotent."""
from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from analysis import queries
from analysis.models import Event, ReportSnapshot
from assignment.models import Exposure
from experiments.models import Experiment

from .reporting import make_experiment, populate, recent_end

pytestmark = pytest.mark.django_db


def run(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **kwargs)
    return out.getvalue()


def test_simulate_writes_units_events_and_a_report():
    experiment = make_experiment()
    end = recent_end().isoformat()
    out = run("simulate", "--experiment", "checkout", "--units", "1200", "--days", "5", "--lift", "0.2",
              "--seed", "4", "--end", end, "--no-progress")
    assert "Simulated 1200 units" in out and "Report computed" in out
    assert Exposure.objects.filter(experiment=experiment).count() == 1200
    assert Event.objects.filter(event="purchase").exists() and Event.objects.filter(event="refund").exists()
    assert ReportSnapshot.objects.filter(experiment=experiment).count() == 1
    # Attributes honour the targeting rule (platform in ios/android/web) and carry the defaults.
    attrs = Exposure.objects.filter(experiment=experiment).values_list("attributes", flat=True)
    assert {a["platform"] for a in attrs} <= {"ios", "android", "web"}
    assert {"country", "plan"} <= set(next(iter(attrs)))
    # Pre-period events exist (for CUPED) and come before the unit's first exposure.
    pre = Event.objects.filter(event_id__endswith=":purchase:pre").first()
    first_seen = Exposure.objects.get(experiment=experiment, unit_id=pre.unit_id).first_seen
    assert pre.timestamp < first_seen
    # The start of the experiment moved back to the first simulated unit.
    experiment.refresh_from_db()
    assert experiment.started_at <= Exposure.objects.filter(experiment=experiment).order_by("first_seen")[0].first_seen


def test_simulate_is_idempotent_and_reset_starts_over():
    experiment = make_experiment()
    end = recent_end()
    first = populate(experiment, units=500, seed=9, end=end)
    events = Event.objects.count()
    again = populate(experiment, units=500, seed=9, end=end)
    assert Exposure.objects.count() == 500 and Event.objects.count() == events
    assert first.exposures_written == 500 and again.exposures_written == 0 and again.events_written == 0
    out = run("simulate", "--experiment", "checkout", "--units", "300", "--reset", "--no-report", "--no-progress")
    assert "Deleted 500 simulated exposures" in out
    assert Exposure.objects.count() == 300


def test_same_seed_same_data():
    a = make_experiment("a")
    b = make_experiment("b")
    end = recent_end()
    populate(a, units=400, seed=21, end=end)
    populate(b, units=400, seed=21, end=end)

    def shape(experiment):
        return sorted((x.unit_id.split("-")[-1], x.variant.key) for x in Exposure.objects.filter(experiment=experiment))

    assert shape(a) == shape(b)


def test_true_lift_shows_up_in_the_aggregates():
    experiment = make_experiment()
    populate(experiment, units=8000, lift=0.5, seed=2)
    stats = queries.metric_statistics(experiment)["purchase"]
    control = stats["control"].sum / stats["control"].n
    green = stats["green"].sum / stats["green"].n
    assert green / control - 1 == pytest.approx(0.5, abs=0.2)
    refunds = queries.metric_statistics(experiment)["refund"]
    assert refunds["green"].sum / refunds["green"].n == pytest.approx(
        refunds["control"].sum / refunds["control"].n, abs=0.01)  # the guardrail holds


def test_drop_treatment_makes_a_sample_ratio_mismatch():
    experiment = make_experiment()
    populate(experiment, units=3000, drop_treatment=0.2)
    counts = queries.exposure_counts(experiment)
    assert counts["green"] < 0.9 * counts["control"]


@pytest.mark.parametrize("args, message", [
    (["--experiment", "nope"], "No experiment"),
    (["--lift", "-2"], "--lift"),
    (["--baseline", "1.5"], "--baseline"),
    (["--drop-treatment", "1"], "--drop-treatment"),
    (["--end", "tomorrow"], "--end"),
    (["--units", "0"], "positive"),
])
def test_simulate_rejects_bad_arguments(args, message):
    make_experiment("checkout-button")
    with pytest.raises(CommandError, match=message):
        run("simulate", *args, "--no-progress")


def test_seed_demo_small_and_idempotent():
    out = run("seed_demo", "--units", "1500", "--days", "4", "--no-progress")
    assert "Created the demo login" in out and "Computed the report" in out
    experiment = Experiment.objects.get(key="checkout-button")
    assert User.objects.filter(username="demo", is_superuser=True).exists()
    exposures = Exposure.objects.filter(experiment=experiment).count()
    snapshots = ReportSnapshot.objects.filter(experiment=experiment).count()
    events = Event.objects.count()
    assert exposures == 1500 and snapshots >= 4
    out = run("seed_demo", "--units", "1500", "--days", "4", "--no-progress")
    assert "already there" in out
    assert Exposure.objects.filter(experiment=experiment).count() == exposures
    assert ReportSnapshot.objects.filter(experiment=experiment).count() == snapshots
    assert Event.objects.count() == events


@pytest.mark.slow
def test_seed_demo_default_tells_a_clear_story():
    """The first-run demo (defaults): a healthy split, CUPED at work, and - at 20,000 of the
    planned 40,000 units with sequential testing off - an early look, not a Ship (issue 11:
    the demo used to say "Ship green" at half its planned size)."""
    run("seed_demo", "--no-progress")
    snapshot = ReportSnapshot.objects.filter(experiment__key="checkout-button").latest()
    p = snapshot.payload
    assert sum(p["srm"]["counts"].values()) == 20_000 and p["srm"]["passed"]
    d = p["decision"]
    assert d["recommendation"] == "keep_running" and "Ship" not in d["headline"]
    assert d["headline"].startswith("Early look: not conclusive until 40,000 units (50%)")
    assert any(r.startswith("What would change the call") for r in d["reasons"])
    refund = next(m for m in p["metrics"] if m["metric"] == "refund")
    assert not any(v.get("guardrail_alert") for v in refund["variants"])
    assert refund["variants"][1]["non_inferiority"]["margin_relative"] == 0.25
    green = next(v for v in p["metrics"][0]["variants"] if v["variant"] == "green")
    assert green["early_look"] and not green["significant"] and green["sequential"]["ci_relative"]
    assert green["cuped"]["applied"] and green["cuped"]["variance_reduction"] > 0.05
    assert ReportSnapshot.objects.filter(experiment__key="checkout-button").count() >= 14
    assert set(p["segments"]) == {"country", "platform", "plan"}
