"""Erasure of a unit: events, exposures (stored and buffered), overrides and their history."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from analysis import ingestion, privacy, queries
from analysis.models import Event
from assignment import exposures
from assignment.models import Exposure
from experiments import services
from experiments.models import Metric, Override

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
WEIRD_IDS = ["u/with/slashes", "ümlaut 日本 space", "100%?#&=+;", "a" * 256, "..", "trailing/"]


@pytest.fixture(autouse=True)
def _empty_exposure_buffer():
    exposures.local_buffer.take()
    yield
    exposures.local_buffer.take()


@pytest.fixture
def experiment(db):
    Metric.objects.create(key="buy", name="Buy", event="purchase", kind="sum")
    return services.create_experiment({
        "key": "exp", "name": "exp", "cuped": False,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "buy", "role": "primary"}], "targeting": [],
    })


def seed_unit(experiment, unit_id, *, events=3, override=True):
    variant = experiment.variants.get(key="b")
    Exposure.objects.create(experiment=experiment, variant=variant, unit_id=unit_id,
                            first_seen=T0, last_seen=T0, attributes={"country": "CN"})
    ingestion.ingest_events([
        {"event_id": f"{uuid.uuid4()}", "unit_id": unit_id, "event": "purchase", "value": 10.0,
         "timestamp": "2026-11-20T13:00:00Z"} for i in range(events)
    ])
    if override:
        o = Override.objects.create(experiment=experiment, unit_id=unit_id, variant=variant, note="qa")
        o.note = "changed"
        o.save()


def test_erase_unit_deletes_everything_about_the_unit_only(experiment):
    seed_unit(experiment, "victim")
    seed_unit(experiment, "bystander", events=2)
    assert Override.history.filter(unit_id="victim").count() == 2
    assert privacy.erase_unit("victim") == {"events": 3, "exposures": 1, "overrides": 1}
    assert not Event.objects.filter(unit_id="victim").exists()
    assert not Exposure.objects.filter(unit_id="victim").exists()
    assert not Override.objects.filter(unit_id="victim").exists()
    assert not Override.history.filter(unit_id="victim").exists()  # incl. the deletion record
    assert Event.objects.filter(unit_id="bystander").count() == 2
    assert Exposure.objects.filter(unit_id="bystander").count() == 1
    assert Override.history.filter(unit_id="bystander").count() == 2
    stats = queries.metric_statistics(experiment)["buy"]["b"]
    assert (stats.n, stats.sum) == (1, 20.0)
    assert privacy.erase_unit("victim") == {"events": 0, "exposures": 0, "overrides": 0}


def test_buffered_exposures_do_not_come_back(experiment):
    variant = experiment.variants.get(key="b")
    exposures.local_buffer.extend([(experiment.pk, variant.pk, "buffered", T0.timestamp(), {})])
    privacy.erase_unit("buffered")
    exposures.flush()
    assert not Exposure.objects.filter(unit_id="buffered").exists()


@pytest.mark.parametrize("unit_id", WEIRD_IDS)
def test_endpoint_erases_url_encoded_unit_ids(experiment, api_client_for, unit_id):
    seed_unit(experiment, unit_id, events=2)
    response = api_client_for("admin").delete(f"/api/v1/units/{quote(unit_id, safe='')}")
    assert response.status_code == 200, response.content
    assert response.json() == {"unit_id": unit_id, "deleted": {"events": 2, "exposures": 1, "overrides": 1}}
    assert not Event.objects.filter(unit_id=unit_id).exists()


@pytest.mark.parametrize("scope", ["client", "analyst"])
def test_only_admins_may_erase(experiment, api_client_for, scope):
    seed_unit(experiment, "u1")
    assert api_client_for(scope).delete("/api/v1/units/u1").status_code == 403
    assert api_client_for(None).delete("/api/v1/units/u1").status_code == 401
    assert Event.objects.filter(unit_id="u1").count() == 3


@pytest.mark.parametrize(("path", "field"), [("a" * 257, "unit_id"), ("a%00b", "unit_id")])
def test_impossible_unit_ids_are_400(db, api_client_for, path, field):
    response = api_client_for("admin").delete(f"/api/v1/units/{path}")
    assert response.status_code == 400
    assert field in response.json()


def test_unknown_unit_is_200_with_zero_counts(db, api_client_for):
    response = api_client_for("admin").delete("/api/v1/units/nobody")
    assert response.status_code == 200
    assert response.json()["deleted"] == {"events": 0, "exposures": 0, "overrides": 0}


# --- every copy: tombstones, the admin log, report snapshots ---------------------------------------

VICTIM = "victim@example.com"


def _item(experiment, unit, ts, key="b", attributes=None):
    return (experiment.pk, experiment.variants.get(key=key).pk, unit, ts, attributes or {})


def test_the_tombstone_keeps_a_keyed_hash_not_the_unit_id(experiment):
    from assignment.erasure import unit_hash
    from assignment.models import UnitTombstone

    privacy.erase_unit(VICTIM)
    [tombstone] = UnitTombstone.objects.all()
    assert tombstone.unit_hash == unit_hash(VICTIM) and VICTIM not in tombstone.unit_hash
    assert len(tombstone.unit_hash) == 64


def test_copies_from_before_the_erasure_are_dropped_new_exposures_are_written(experiment):
    """Another process's buffer still holds the unit's exposure when the erasure runs."""
    before = datetime.now(UTC).timestamp() - 1
    privacy.erase_unit(VICTIM)
    after = datetime.now(UTC).timestamp() + 1
    exposures.local_buffer.extend([_item(experiment, VICTIM, before), _item(experiment, "bystander", before)])
    exposures.flush()
    assert set(Exposure.objects.values_list("unit_id", flat=True)) == {"bystander"}
    # A new assignment after the erasure is a new, consented exposure.
    exposures.local_buffer.extend([_item(experiment, VICTIM, before), _item(experiment, VICTIM, after)])
    exposures.flush()
    row = Exposure.objects.get(unit_id=VICTIM)
    assert row.first_seen.timestamp() == pytest.approx(after)


def test_events_from_before_the_erasure_are_refused_later_ones_stored(experiment):
    privacy.erase_unit(VICTIM)
    now = datetime.now(UTC)
    old = {"event_id": "old", "unit_id": VICTIM, "event": "purchase", "value": 1.0,
           "timestamp": (now - timedelta(minutes=5)).isoformat()}
    new = {**old, "event_id": "new", "timestamp": (now + timedelta(seconds=5)).isoformat()}
    other = {**old, "event_id": "other", "unit_id": "bystander"}
    result = ingestion.ingest_events([old, new, other])
    assert (result.accepted, result.duplicates) == (2, 0)
    assert result.rejected == [{"index": 0, "errors": {"unit_id": [ingestion.ERASED_UNIT]}}]
    assert set(Event.objects.values_list("event_id", flat=True)) == {"new", "other"}


def test_rejected_exposures_of_the_unit_are_erased(experiment):
    from assignment.models import RejectedExposure

    exposures.local_buffer.extend([_item(experiment, VICTIM, 1e300), _item(experiment, "other", 1e300)])
    exposures.flush()
    exposures.set_aside([(b'["' + VICTIM.encode() + b'", garbage', "malformed queue message")])
    assert RejectedExposure.objects.count() == 3
    privacy.erase_unit(VICTIM)
    assert [VICTIM in r.item for r in RejectedExposure.objects.all()] == [False]


def test_the_admin_log_no_longer_names_the_unit(experiment, admin_user, rf):
    """A QA override edited in the admin leaves "<unit> -> variant" in the log: it is redacted."""
    from django.contrib import admin
    from django.contrib.admin.models import LogEntry

    from experiments.models import Experiment

    variant = experiment.variants.get(key="b")
    override = Override.objects.create(experiment=experiment, unit_id=VICTIM, variant=variant)
    model_admin = admin.site._registry[Experiment]
    request = rf.post("/admin/")
    request.user = admin_user
    label = "QA override (forced variant for one unit)"
    model_admin.log_change(request, experiment, [{"added": {"name": label, "object": str(override)}}])
    model_admin.log_change(request, experiment, [{"changed": {"name": label, "object": f"{VICTIM}2 -> b",
                                                              "fields": ["note"]}}])
    assert LogEntry.objects.filter(change_message__contains=VICTIM).count() == 2
    privacy.erase_unit(VICTIM)
    messages = [e.get_change_message() for e in LogEntry.objects.order_by("id")]
    assert VICTIM + " " not in " ".join(e.change_message for e in LogEntry.objects.all())
    assert "(erased unit) -> b" in messages[0]
    assert f"{VICTIM}2 -> b" in messages[1]  # another unit whose id merely starts like it: kept
    assert LogEntry.objects.count() == 2  # the audit (who changed what) stays


def _segment_exposures(experiment, emails):
    control, b = experiment.variants.get(key="control"), experiment.variants.get(key="b")
    Exposure.objects.bulk_create([
        Exposure(experiment=experiment, variant=(control, b)[i % 2], unit_id=f"u-{i}", first_seen=T0,
                 last_seen=T0, attributes={"email": email}) for i, email in enumerate(emails)
    ])


def test_rare_segment_values_are_merged_into_other_when_a_report_is_computed(experiment, settings):
    from analysis import reports

    settings.REPORT_SEGMENT_ATTRIBUTES = ["email"]
    _segment_exposures(experiment, ["shared@example.com"] * 24 + [VICTIM, "someone@example.com"])
    segments = reports.compute_report(experiment, until=T0 + timedelta(days=1)).payload["segments"]["email"]
    assert list(segments) == ["shared@example.com", "(other)"]
    assert sum(v["units"] for v in segments["(other)"][0]["variants"]) == 2
    settings.REPORT_SEGMENT_MIN_UNITS = 30
    segments = reports.compute_report(experiment, until=T0 + timedelta(days=1)).payload["segments"]["email"]
    assert list(segments) == ["(other)"]


def test_erasure_removes_the_units_values_from_stored_snapshots(experiment, settings):
    """Snapshots computed before the minimum existed still hold a row per rare value."""
    from analysis import reports
    from analysis.models import ReportSnapshot

    settings.REPORT_SEGMENT_ATTRIBUTES = ["email"]
    settings.REPORT_SEGMENT_MIN_UNITS = 1
    _segment_exposures(experiment, ["shared@example.com"] * 24)
    Exposure.objects.create(experiment=experiment, variant=experiment.variants.get(key="b"), unit_id=VICTIM,
                            first_seen=T0, last_seen=T0, attributes={"email": VICTIM})
    old = reports.compute_report(experiment, until=T0 + timedelta(days=1))
    assert VICTIM in old.payload["segments"]["email"]
    settings.REPORT_SEGMENT_MIN_UNITS = 20
    privacy.erase_unit(VICTIM)
    old = ReportSnapshot.objects.get(pk=old.pk)
    assert VICTIM not in str(old.payload)
    assert "shared@example.com" in old.payload["segments"]["email"]  # a big segment names nobody


# --- production: the Redis queue, failed flushes, concurrent writers ---------------------------------

class Killed(BaseException):
    """A flusher killed mid-write (no exception handler runs)."""


@pytest.fixture
def redis_queue(settings):
    from tests.conftest import TEST_REDIS_URL

    settings.REDIS_URL = TEST_REDIS_URL
    settings.ASSIGNMENT_REDIS_PREFIX = f"{{privacy-{uuid.uuid4().hex[:8]}}}"
    settings.ASSIGNMENT_REDIS_BATCH_SECONDS = 0
    client = exposures.redis_client()
    yield client
    for key in client.scan_iter(f"{settings.ASSIGNMENT_REDIS_PREFIX}*"):
        client.delete(key)


def _queue(client, items):
    """RPUSH as another web process would (this process's buffers never see the items)."""
    client.rpush(exposures._keys()[0], *exposures._encode_all(items))


@pytest.mark.redis
def test_an_exposure_queued_during_an_outage_is_not_written_back_later(experiment, redis_queue, settings, monkeypatch):
    """The flush during a database outage leaves a processing list; the erasure after recovery
    does not see it (its lease is fresh); when the lease expires the list is written -- without
    the erased unit."""
    now = datetime.now(UTC).timestamp()
    _queue(redis_queue, [_item(experiment, VICTIM, now), _item(experiment, "bystander", now)])
    monkeypatch.setattr(exposures, "upsert", lambda items: (_ for _ in ()).throw(Killed("outage")))
    with pytest.raises(Killed):
        exposures.flush()
    monkeypatch.undo()
    assert privacy.erase_unit(VICTIM)["exposures"] == 0
    settings.ASSIGNMENT_EXPOSURE_LEASE_SECONDS = 0  # two minutes later
    assert exposures.flush() == 2
    assert list(Exposure.objects.values_list("unit_id", flat=True)) == ["bystander"]


def _in_thread(target, *args):
    from django.db import connection

    def run():
        try:
            target(*args)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_erasure_waits_for_a_flush_that_read_the_tombstones_before_it(experiment, monkeypatch):
    """The write checked the tombstones (none yet); the erasure must not commit in between."""
    checked, release = threading.Event(), threading.Event()
    real = exposures.drop_erased

    def slow(items):
        kept = real(items)
        checked.set()
        release.wait(10)
        return kept

    monkeypatch.setattr(exposures, "drop_erased", slow)
    writer = _in_thread(exposures.upsert, [_item(experiment, VICTIM, datetime.now(UTC).timestamp() - 1)])
    assert checked.wait(10)
    eraser = _in_thread(privacy.erase_unit, VICTIM)
    time.sleep(0.5)
    assert eraser.is_alive(), "the erasure did not wait for the write in flight"
    release.set()
    writer.join(10)
    eraser.join(10)
    assert not Exposure.objects.filter(unit_id=VICTIM).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_erasure_waits_for_an_event_batch_that_read_the_tombstones_before_it(experiment, monkeypatch):
    checked, release = threading.Event(), threading.Event()
    real = ingestion._without_erased

    def slow(rows, erased):
        kept = real(rows, erased)
        checked.set()
        release.wait(10)
        return kept

    monkeypatch.setattr(ingestion, "_without_erased", slow)
    event = {"event_id": "e1", "unit_id": VICTIM, "event": "purchase", "value": 1.0,
             "timestamp": datetime.now(UTC).isoformat()}
    writer = _in_thread(ingestion.ingest_events, [event])
    assert checked.wait(10)
    eraser = _in_thread(privacy.erase_unit, VICTIM)
    time.sleep(0.5)
    assert eraser.is_alive(), "the erasure did not wait for the event batch in flight"
    release.set()
    writer.join(10)
    eraser.join(10)
    assert not Event.objects.filter(unit_id=VICTIM).exists()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_assign_and_erase_at_once_brings_nothing_back(experiment, redis_queue):
    """40 units assigned by "other web processes" (straight into Redis) and erased at once, while
    two flushers drain the queue: 0 of 40 come back; their bystanders are all written."""
    n = 40
    stop = threading.Event()
    flush_errors: list[BaseException] = []

    def flusher():
        while not stop.is_set():
            try:
                exposures.flush()
            except Exception as exc:  # pragma: no cover - reported below
                flush_errors.append(exc)

    def assign_then_erase(i):
        now = datetime.now(UTC).timestamp()
        _queue(redis_queue, [_item(experiment, f"erased-{i}", now), _item(experiment, f"kept-{i}", now)])
        time.sleep(0.002 * (i % 5))
        privacy.erase_unit(f"erased-{i}")

    flushers = [_in_thread(flusher) for _ in range(2)]
    workers = [_in_thread(assign_then_erase, i) for i in range(n)]
    for thread in workers:
        thread.join(60)
    stop.set()
    for thread in flushers:
        thread.join(60)
    exposures.flush()
    units = set(Exposure.objects.values_list("unit_id", flat=True))
    assert not flush_errors
    assert {u for u in units if u.startswith("erased-")} == set()
    assert {u for u in units if u.startswith("kept-")} == {f"kept-{i}" for i in range(n)}
