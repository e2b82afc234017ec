"""ANALYTICS_BACKEND=clickhouse end to end: HTTP -> Redis Stream -> loader -> ClickHouse (chdb,
the same engine in-process, behind the ``CLICKHOUSE_URL=chdb://`` client), exposures mirrored
the same way, erasure, a full stream, and a loader that dies or finds ClickHouse down.

The reference is Django's database: the same events and exposures written there through the
default path must give the same per-variant statistics as ClickHouse after the loader ran,
counts exactly and float sums to 1e-12 relative. Needs Redis (marker ``redis``) and chdb.
"""
from __future__ import annotations

import dataclasses
import math
import random
import uuid
from datetime import timedelta

import pytest

from analysis import clickhouse, ingestion, loader, queries, stream
from assignment import exposures
from tests.conftest import TEST_REDIS_URL

from .test_dialects import _importable, assert_same_tables
from .test_queries import BOUNDARIES, T0, make_experiment

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not _importable("chdb"), reason="chdb is not installed (clickhouse extra)"),
]


@pytest.fixture
def ch(settings, db):
    """ClickHouse (chdb, in memory) with fresh tables, a private stream, claims at once."""
    settings.ANALYTICS_BACKEND, settings.CLICKHOUSE_URL = "clickhouse", "chdb://"
    settings.REDIS_URL = TEST_REDIS_URL
    settings.CLICKHOUSE_STREAM_KEY = f"test:chstream:{uuid.uuid4().hex}"
    settings.CLICKHOUSE_LOADER_CLAIM_SECONDS = 0
    clickhouse._client.cache_clear()
    client = clickhouse.client()
    for table in clickhouse.tables():
        client.command(f'DROP TABLE IF EXISTS "{table}"')
    from django.core.management import call_command

    call_command("clickhouse_init")
    redis, key = stream.redis_client(), settings.CLICKHOUSE_STREAM_KEY
    yield client
    redis.delete(key)
    clickhouse._client.cache_clear()
    client.close()


def _count(client, table: str, final: bool = True) -> int:
    return client.query(f'SELECT count() FROM "{table}"{" FINAL" if final else ""}').result_rows[0][0]


def _generate(experiment, seed: int = 20261203, units: int = 150):
    """(exposure items, event dicts): windows to the microsecond, clamped-free values, nulls."""
    rng = random.Random(seed)
    variants = {v.key: v.pk for v in experiment.variants.all()}
    items, events = [], []
    for i in range(units):
        unit = f"u{i}"
        first_seen = T0 + timedelta(seconds=rng.randrange(0, 4 * 86400), microseconds=rng.randrange(10**6))
        attributes = {"country": rng.choice(["US", "DE", "FR"])} if rng.random() < 0.8 else {}
        variant = variants[rng.choice(list(variants))]
        items.append((experiment.pk, variant, unit, first_seen.timestamp(), attributes, 1))
        if rng.random() < 0.2:  # a later exposure of the same unit: the first one counts
            items.append((experiment.pk, variant, unit, first_seen.timestamp() + 3600, {"country": "XX"}, 1))
        for _ in range(rng.randrange(0, 7)):
            ts = first_seen + (rng.choice(BOUNDARIES) if rng.random() < 0.3
                               else timedelta(seconds=rng.uniform(-15 * 86400, 3 * 86400)))
            value = None if rng.random() < 0.15 else round(rng.uniform(-5, 120), 2)
            events.append({"event_id": uuid.uuid4().hex, "unit_id": unit,
                           "event": rng.choice(["purchase", "purchase", "checkout", "page_view"]),
                           "value": value, "timestamp": ts.isoformat()})
    return items, events


def _post(api, events, size=100):
    for start in range(0, len(events), size):
        response = api.post("/api/v1/events", {"events": events[start:start + size]}, format="json")
        assert response.status_code == 202, response.content
        assert response.json()["accepted"] == len(events[start:start + size])


def _django_reference(settings, experiment, items, events):
    """The same data through the default path (Django's database): the expected statistics."""
    settings.ANALYTICS_BACKEND = "django"
    exposures.write(items)
    ingestion.ingest_events(events)
    want = {"all": queries.metric_statistics(experiment),
            "segments": queries.segment_statistics(experiment, "country"),
            "counts": queries.exposure_counts(experiment)}
    settings.ANALYTICS_BACKEND = "clickhouse"
    return want


def _clickhouse_results(experiment):
    return {"all": queries.metric_statistics(experiment),
            "segments": queries.segment_statistics(experiment, "country"),
            "counts": queries.exposure_counts(experiment)}


def _without_moments(table):
    """Segments can be a handful of units whose third moment is ~0: the engines' rounding noise
    (~1e-11, from pilot means near 50) is then not small relative to the segment's own sums, so
    the centred moments are compared absolutely and the raw sums as everywhere else."""
    out = {}
    for mkey, per_variant in table.items():
        out[mkey] = {}
        for vkey, vs in per_variant.items():
            out[mkey][vkey] = dataclasses.replace(vs, m2=None, m3=None)
    return out


def _assert_same(got, want):
    assert_same_tables(got["all"], want["all"])
    assert list(got["segments"]) == list(want["segments"])
    for seg in want["segments"]:
        g, w = got["segments"][seg], want["segments"][seg]
        assert_same_tables(_without_moments(g), _without_moments(w), f"[{seg}]")
        for mkey in w:
            for vkey in w[mkey]:
                for name in ("m2", "m3"):
                    a, b = getattr(g[mkey][vkey], name), getattr(w[mkey][vkey], name)
                    assert (a is None) == (b is None)
                    if b is not None:
                        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (seg, mkey, vkey, name, a, b)
    assert got["counts"] == want["counts"]


def test_events_and_exposures_reach_clickhouse_once_through_http_stream_and_loader(ch, settings, api_client_for):
    experiment = make_experiment("stream")
    items, events = _generate(experiment)
    api = api_client_for("client")
    _post(api, events)
    exposures.write(items[: len(items) // 2])  # mirrored: one stream entry per upsert
    exposures.write(items[len(items) // 2:])
    assert stream.pending() == len(events) // 100 + 1 + 2  # one entry per accepted batch
    assert _count(ch, "analysis_event") == 0  # nothing in ClickHouse before the loader runs

    result = loader.load()
    assert (result.events, stream.pending()) == (len(events), 0)
    # Redelivery: the same batches again (a client retry) and a replayed exposure batch.
    _post(api, events[:200])
    exposures.write(items[:40])
    loader.load()
    assert _count(ch, "analysis_event", final=False) == len(events) + 200  # stored twice ...
    assert _count(ch, "analysis_event") == len(events)  # ... read once

    # Same statistics as Django's database fed the same data (Django's tables are separate).
    from analysis.models import Event
    from assignment.models import Exposure

    got = _clickhouse_results(experiment)
    Exposure.objects.all().delete()
    Event.objects.all().delete()
    want = _django_reference(settings, experiment, items, events)
    assert sum(want["counts"].values()) == 150 and Event.objects.count() == len(events)
    _assert_same(got, want)


def test_a_loader_that_dies_after_inserting_or_finds_clickhouse_down_loses_nothing(ch, settings, api_client_for, monkeypatch):
    """Nothing the endpoint acknowledged is lost: entries stay pending until inserted; a crash
    after the insert (before XACK) reinserts them, read once."""
    experiment = make_experiment("fault")
    items, events = _generate(experiment, seed=7, units=60)
    exposures.write(items)
    api = api_client_for("client")

    # 1. ClickHouse is down ("stopped"): the loader fails, the entries stay in the stream.
    _post(api, events[:150])

    class Down:
        def raw_insert(self, *args, **kwargs):
            raise ConnectionError("ClickHouse is down")

    monkeypatch.setattr(clickhouse, "client", lambda: Down())
    with pytest.raises(ConnectionError):
        loader.load()
    pending = stream.pending()
    assert pending >= 2
    _post(api, events[150:])  # the endpoint keeps accepting meanwhile
    assert stream.pending() > pending

    # 2. The loader dies between the insert and the acknowledgement.
    monkeypatch.undo()
    real_insert = clickhouse.insert_lines
    calls = []

    def insert_then_die(table, columns, lines):
        real_insert(table, columns, lines)
        calls.append(len(lines))
        if table == "analysis_event":
            raise KeyboardInterrupt("worker killed")

    monkeypatch.setattr(clickhouse, "insert_lines", insert_then_die)
    with pytest.raises(KeyboardInterrupt):
        loader.load_once(consumer="dead-worker")
    assert _count(ch, "analysis_event", final=False) > 0 and stream.pending() > 0

    # 3. Restarted (another consumer claims the dead one's entries): everything, once.
    monkeypatch.undo()
    loader.load(consumer="new-worker")
    assert stream.pending() == 0
    assert _count(ch, "analysis_event") == len(events)
    assert _count(ch, "analysis_event", final=False) > len(events)  # the reinserted copies
    assert _count(ch, "assignment_exposure") == 60


def test_a_full_stream_answers_503_with_retry_after_and_keeps_what_it_has(ch, settings, api_client_for):
    settings.CLICKHOUSE_STREAM_MAX_ENTRIES = 3
    api = api_client_for("client")
    batch = lambda i: {"events": [{"event_id": f"full-{i}", "unit_id": "u", "event": "purchase"}]}  # noqa: E731
    for i in range(3):
        assert api.post("/api/v1/events", batch(i), format="json").status_code == 202
    response = api.post("/api/v1/events", batch(3), format="json")
    assert response.status_code == 503
    assert response["Retry-After"] and "full" in response.json()["detail"]
    assert stream.pending() == 3
    loader.load()
    assert api.post("/api/v1/events", batch(3), format="json").status_code == 202
    loader.load()
    assert _count(ch, "analysis_event") == 4


def test_an_unreachable_stream_answers_503(ch, settings, api_client_for):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = api_client_for("client").post(
        "/api/v1/events", {"events": [{"event_id": "x", "unit_id": "u", "event": "purchase"}]}, format="json")
    assert response.status_code == 503 and "unreachable" in response.json()["detail"]


def test_erasure_reaches_the_pending_stream_and_clickhouse(ch, settings, api_client_for):
    experiment = make_experiment("erase")
    variant = experiment.variants.get(key="a").pk
    now = T0.timestamp()
    exposures.write([(experiment.pk, variant, "victim", now, {"email": "v@example.org"}, 1),
                     (experiment.pk, variant, "bystander", now, {}, 1)])
    api = api_client_for("client")
    ts = T0.isoformat()
    _post(api, [{"event_id": f"a{i}", "unit_id": "victim", "event": "purchase", "timestamp": ts} for i in range(3)]
          + [{"event_id": "b0", "unit_id": "bystander", "event": "purchase", "timestamp": ts}])
    loader.load()  # three victim events and the exposures in ClickHouse ...
    _post(api, [{"event_id": "a9", "unit_id": "victim", "event": "purchase", "timestamp": ts},
                {"event_id": "b1", "unit_id": "bystander", "event": "purchase", "timestamp": ts}])
    # ... one more still pending in the stream, and a stale copy a dead loader holds.
    client = stream.redis_client()
    loader.ensure_group(client)
    held = client.xrange(settings.CLICKHOUSE_STREAM_KEY)
    client.xreadgroup(stream.group(), "dead", {settings.CLICKHOUSE_STREAM_KEY: ">"})

    response = api_client_for("admin").delete("/api/v1/units/victim")
    assert response.status_code == 200, response.content
    assert response.json()["deleted"]["events"] == 4  # 3 in ClickHouse + 1 in the stream
    assert all(b"victim" not in f[b"d"] for _, f in client.xrange(settings.CLICKHOUSE_STREAM_KEY))
    assert held  # the stale delivery is gone from the stream; the tombstone covers copies in flight
    loader.load()
    rows = ch.query('SELECT unit_id FROM "analysis_event" FINAL').result_rows
    assert sorted(r[0] for r in rows) == ["bystander", "bystander"]
    assert [r[0] for r in ch.query('SELECT unit_id FROM "assignment_exposure" FINAL').result_rows] == ["bystander"]

    # A late copy of a pre-erasure event (a retried request) is refused, a new one is stored.
    late = api.post("/api/v1/events", {"events": [
        {"event_id": "a0", "unit_id": "victim", "event": "purchase", "timestamp": ts},
        {"event_id": "new", "unit_id": "victim", "event": "purchase"}]}, format="json").json()
    assert late["accepted"] == 1 and late["rejected"][0]["errors"] == {"unit_id": [ingestion.ERASED_UNIT]}
    loader.load()
    assert _count(ch, "analysis_event") == 3


def test_the_loader_drops_rows_of_a_unit_erased_while_they_waited(ch, settings, api_client_for):
    """An entry appended before the erasure but read by a loader after it (the race the lock
    orders): the tombstone check under the lock drops the unit's rows."""
    from django.utils import timezone

    from assignment import erasure
    from assignment.models import UnitTombstone

    rows = [("e1", "gone", "purchase", 1.0, T0, "{}"), ("e2", "kept", "purchase", 2.0, T0, "{}")]
    stream.append_events(rows, received_at=T0)
    UnitTombstone.objects.create(unit_hash=erasure.unit_hash("gone"), erased_at=timezone.now())
    result = loader.load()
    assert (result.events, result.dropped) == (1, 1)
    assert [r[0] for r in ch.query('SELECT unit_id FROM "analysis_event" FINAL').result_rows] == ["kept"]


def test_erasure_answers_503_when_the_stream_is_unreachable(ch, settings, api_client_for):
    from assignment.models import UnitTombstone

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = api_client_for("admin").delete("/api/v1/units/someone")
    assert response.status_code == 503
    assert not UnitTombstone.objects.exists()  # rolled back: the retry erases for real


def test_the_beat_task_and_the_command_load_the_stream(ch, settings):
    from io import StringIO

    from django.core.management import call_command

    from analysis import tasks

    stream.append_events([("t1", "u", "purchase", None, T0, "{}")], received_at=T0)
    assert tasks.load_clickhouse.apply().get() == 1
    stream.append_events([("t2", "u", "purchase", None, T0, "{}")], received_at=T0)
    out = StringIO()
    call_command("clickhouse_load", "--seconds", "5", stdout=out)
    assert "loaded 1 events" in out.getvalue() and "0 entries still pending" in out.getvalue()
    assert _count(ch, "analysis_event") == 2
    settings.ANALYTICS_BACKEND = "django"
    assert tasks.load_clickhouse.apply().get() == 0


@pytest.mark.clickhouse_server
@pytest.mark.skipif(not __import__("os").environ.get("CLICKHOUSE_TEST_URL"),
                    reason="needs CLICKHOUSE_TEST_URL (a scratch database: its two tables are dropped)")
def test_the_stream_loader_and_erasure_on_a_real_server(settings, db, api_client_for):
    """The same path over the network (clickhouse-connect: raw_insert, lightweight DELETE)."""
    import os

    from django.core.management import call_command

    settings.ANALYTICS_BACKEND, settings.CLICKHOUSE_URL = "clickhouse", os.environ["CLICKHOUSE_TEST_URL"]
    settings.REDIS_URL = TEST_REDIS_URL
    settings.CLICKHOUSE_STREAM_KEY = f"test:chstream:{uuid.uuid4().hex}"
    clickhouse._client.cache_clear()
    client = clickhouse.client()
    for table in clickhouse.tables():
        client.command(f'DROP TABLE IF EXISTS "{table}"')
    call_command("clickhouse_init")
    try:
        _post(api_client_for("client"), [{"event_id": f"s{i}", "unit_id": f"u{i % 3}", "event": "purchase"}
                                         for i in range(30)])
        _post(api_client_for("client"), [{"event_id": f"s{i}", "unit_id": f"u{i % 3}", "event": "purchase"}
                                         for i in range(10)])  # a retry
        assert loader.load().events == 40
        assert _count(client, "analysis_event") == 30
        assert api_client_for("admin").delete("/api/v1/units/u0").json()["deleted"]["events"] == 10
        assert _count(client, "analysis_event") == 20
    finally:
        stream.redis_client().delete(settings.CLICKHOUSE_STREAM_KEY)
        clickhouse._client.cache_clear()


def test_system_checks_name_the_missing_setting(settings):
    from analysis.checks import clickhouse_settings

    settings.ANALYTICS_BACKEND, settings.CLICKHOUSE_URL, settings.REDIS_URL = "clickhouse", "", None
    assert [e.id for e in clickhouse_settings(None)] == ["analysis.E002", "analysis.E003"]
    settings.ANALYTICS_BACKEND = "bigquery"
    assert [e.id for e in clickhouse_settings(None)] == ["analysis.E001"]
    settings.ANALYTICS_BACKEND = "django"
    assert clickhouse_settings(None) == []


def test_an_event_id_sent_again_in_another_month_counts_once_the_first_copy(ch, settings, api_client_for):
    """PostgreSQL keeps the first insert of an event_id whatever the copy says. A retry whose
    timestamp was assigned by the server (no ``timestamp`` sent) can land on the other side of
    midnight on the 1st, so its copy sits in another monthly partition, where ReplacingMergeTree
    merges never reach; the reads must still count the event once, as the first copy says."""
    from analysis import daily
    from analysis.models import Event
    from assignment.models import Exposure

    from .test_queries import T0

    experiment = make_experiment("months", ("conv", "revenue"), cuped=False)
    variant = experiment.variants.get(key="control").pk
    start = T0.replace(day=30, hour=20, minute=0)  # 2026-11-30 20:00 UTC
    experiment.started_at = start - timedelta(days=1)
    experiment.save(update_fields=["started_at"])
    items = [(experiment.pk, variant, f"u{i}", start.timestamp(), {}, 1) for i in range(4)]
    first = [{"event_id": f"e{i}", "unit_id": f"u{i}", "event": "purchase", "value": 10.0 + i,
              "timestamp": (start + timedelta(hours=3, minutes=59, seconds=59)).isoformat()} for i in range(4)]
    retry = [{**e, "value": 99.0, "timestamp": (start + timedelta(hours=4, seconds=1)).isoformat()} for e in first]

    api = api_client_for("client")
    exposures.write(items)
    _post(api, first)
    loader.load()
    _post(api, retry)  # the retry: accepted (the endpoint does not ask ClickHouse) ...
    loader.load()
    for _ in range(2):
        ch.command('OPTIMIZE TABLE "analysis_event" FINAL')  # merges never join two months
    assert _count(ch, "analysis_event", final=False) == 8
    assert _count(ch, "analysis_event") == 4  # ... and read once
    partitions = ch.query('SELECT DISTINCT _partition_id FROM "analysis_event" ORDER BY 1').result_rows
    assert partitions == [("202611",), ("202612",)]
    got = queries.metric_statistics(experiment)
    got_daily = daily.daily_increments(experiment)[1]

    Exposure.objects.all().delete()
    Event.objects.all().delete()
    settings.ANALYTICS_BACKEND = "django"
    exposures.write(items)
    _post(api, first)
    response = api.post("/api/v1/events", {"events": retry}, format="json")
    assert response.json()["duplicates"] == 4
    want, want_daily = queries.metric_statistics(experiment), daily.daily_increments(experiment)[1]
    assert want["revenue"]["control"].sum == 10 + 11 + 12 + 13  # the first copies' values
    settings.ANALYTICS_BACKEND = "clickhouse"
    assert_same_tables(got, want)
    assert got_daily == want_daily
