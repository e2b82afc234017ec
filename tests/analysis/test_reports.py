"""The report compute service: aggregate, analyse, store one snapshot in one transaction."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from analysis import queries, reports
from analysis.models import Event, ReportSnapshot
from assignment.models import Exposure
from experiments.models import Experiment

from .reporting import make_experiment, populate

pytestmark = pytest.mark.django_db


def _variant(metric: dict, key: str) -> dict:
    return next(v for v in metric["variants"] if v["variant"] == key)


def test_snapshot_holds_the_results_contract():
    experiment = make_experiment()
    populate(experiment, units=1500, lift=0.2)
    snapshot = reports.compute_report(experiment, task_id="t-1")

    assert ReportSnapshot.objects.count() == 1
    assert snapshot.task_id == "t-1" and snapshot.data_to == snapshot.computed_at
    assert snapshot.data_from == Experiment.objects.get(pk=experiment.pk).started_at
    p = snapshot.payload
    assert p["experiment"] == "checkout" and p["computed_at"] == snapshot.computed_at.isoformat()
    assert set(p["srm"]) >= {"p_value", "passed", "counts"}
    assert p["srm"]["counts"] == queries.exposure_counts(experiment)
    assert [m["metric"] for m in p["metrics"]] == ["purchase", "revenue", "refund"]
    assert [m["role"] for m in p["metrics"]] == ["primary", "secondary", "guardrail"]
    green = _variant(p["metrics"][0], "green")
    assert set(green["lift"]) == {"absolute", "relative", "ci_absolute", "ci_relative"}
    for key in ("p_value", "p_value_adjusted", "chance_to_beat_control", "units", "mean"):
        assert key in green
    assert p["decision"]["recommendation"] in {"ship", "do_not_ship", "keep_running", "invalid_srm"}
    assert p["decision"]["reasons"]
    assert p["power"]["planned_sample_size"] == 4000
    # CUPED ran on the pre-period the simulation wrote.
    assert green["cuped"]["applied"] is True
    # Daily exposures add up to the units.
    assert sum(row["units"] for row in p["daily_exposures"]) == sum(p["srm"]["counts"].values())


def test_means_match_the_rows():
    """The conversion rate in the snapshot equals a count done by hand over the stored rows."""
    experiment = make_experiment()
    populate(experiment, units=800, lift=0.3, seed=3)
    snapshot = reports.compute_report(experiment)
    purchase = snapshot.payload["metrics"][0]
    for variant in ("control", "green"):
        exposures = list(Exposure.objects.filter(experiment=experiment, variant__key=variant))
        converted = 0
        for x in exposures:
            window_end = x.first_seen + timedelta(hours=168)
            if Event.objects.filter(unit_id=x.unit_id, event="purchase", timestamp__gte=x.first_seen,
                                    timestamp__lt=window_end).exists():
                converted += 1
        v = _variant(purchase, variant)
        assert v["units"] == len(exposures)
        assert v["mean"] == pytest.approx(converted / len(exposures))


def test_segments_cover_configured_and_targeting_attributes(settings):
    settings.REPORT_SEGMENT_ATTRIBUTES = ["country"]
    experiment = make_experiment(targeting_attribute="platform")
    populate(experiment, units=600)
    segments = reports.compute_report(experiment).payload["segments"]
    assert list(segments) == ["country", "platform"]
    assert set(segments["platform"]) <= {"ios", "android", "web"}
    summaries = segments["country"]["US"]
    assert [m["metric"] for m in summaries] == ["purchase", "revenue", "refund"]  # every metric
    assert {v["variant"] for v in summaries[0]["variants"]} == {"control", "green"}
    total = sum(v["units"] for value in segments["platform"].values() for v in value[0]["variants"])
    assert total == Exposure.objects.filter(experiment=experiment).count()


def test_a_real_effect_ships_and_a_broken_split_is_invalid():
    winner = make_experiment("winner")
    populate(winner, units=6000, lift=0.6, seed=11)
    assert reports.compute_report(winner).payload["decision"]["recommendation"] == "ship"

    broken = make_experiment("broken")
    populate(broken, units=6000, lift=0.6, seed=11, drop_treatment=0.15)
    body = reports.compute_report(broken).payload
    assert body["srm"]["passed"] is False
    assert body["decision"]["recommendation"] == "invalid_srm"


def test_until_limits_the_data_and_dates_the_snapshot():
    experiment = make_experiment()
    result = populate(experiment, units=1000, days=6)
    middle = result.start + timedelta(days=3)
    early = reports.compute_report(experiment, until=middle, include_segments=False)
    late = reports.compute_report(experiment)
    assert early.computed_at == middle == early.data_to
    assert early.payload["segments"] == {}
    early_units = sum(early.payload["srm"]["counts"].values())
    assert early_units == Exposure.objects.filter(experiment=experiment, first_seen__lt=middle).count()
    assert early_units < sum(late.payload["srm"]["counts"].values())
    assert all(row["date"] <= middle.date().isoformat() for row in early.payload["daily_exposures"])


def test_backfill_stores_one_snapshot_per_past_day():
    experiment = make_experiment()
    populate(experiment, units=500, days=5)
    experiment.refresh_from_db()
    made = reports.backfill_daily(experiment, days=5)
    assert made == ReportSnapshot.objects.filter(experiment=experiment).count() >= 4
    times = list(ReportSnapshot.objects.order_by("computed_at").values_list("computed_at", flat=True))
    assert all(b - a == timedelta(days=1) for a, b in zip(times, times[1:], strict=False))


def test_a_failure_mid_write_leaves_no_snapshot(monkeypatch):
    """The row is inserted inside the transaction; an error before the commit rolls it back."""
    experiment = make_experiment()
    populate(experiment, units=300)

    def boom():
        assert ReportSnapshot.objects.count() == 1  # inserted, not yet committed
        raise RuntimeError("worker died")

    monkeypatch.setattr(reports, "_test_delay", boom)
    with pytest.raises(RuntimeError):
        reports.compute_report(experiment)
    assert ReportSnapshot.objects.count() == 0


def test_test_delay_hook_sleeps_inside_the_transaction(monkeypatch):
    experiment = make_experiment()
    calls = []
    monkeypatch.setenv(reports.TEST_DELAY_ENV, "0.25")
    monkeypatch.setattr(time, "sleep", lambda s: calls.append((s, connection.in_atomic_block)))
    reports.compute_report(experiment)
    assert calls == [(0.25, True)]


def test_no_data_yet_gives_an_honest_report():
    experiment = make_experiment("empty", start=False)
    body = reports.compute_report(experiment).payload
    assert body["srm"]["checked"] is False
    assert all(m["status"] == "insufficient_data" for m in body["metrics"])
    assert body["decision"]["recommendation"] == "keep_running"
    assert body["daily_exposures"] == [] and body["segments"] == {}


def test_an_experiment_without_control_is_a_report_error():
    experiment = make_experiment("nocontrol", start=False)
    experiment.variants.update(is_control=False)
    with pytest.raises(reports.ReportError, match="no control"):
        reports.compute_report(experiment)
    assert not ReportSnapshot.objects.exists()


def test_compute_flushes_buffered_exposures_first(monkeypatch):
    calls = []
    monkeypatch.setattr("assignment.services.flush_exposures", lambda: calls.append(1) or 0)
    reports.compute_report(make_experiment())
    assert calls == [1]


def test_payload_is_strict_json():
    import json

    experiment = make_experiment()
    populate(experiment, units=400)
    snapshot = reports.compute_report(experiment)
    json.dumps(ReportSnapshot.objects.get(pk=snapshot.pk).payload, allow_nan=False)
    assert timezone.is_aware(snapshot.computed_at)


def test_a_bad_segment_attribute_is_skipped(settings):
    settings.REPORT_SEGMENT_ATTRIBUTES = ["country", "bad name!"]
    experiment = make_experiment()
    populate(experiment, units=300)
    segments = reports.compute_report(experiment).payload["segments"]
    assert set(segments) == {"country", "platform"}
