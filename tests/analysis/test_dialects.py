"""One builder, several engines: the same generated rows in SQLite or PostgreSQL (Django's
database, whichever the pass runs on), DuckDB and ClickHouse (in-process, chdb) give the same
per-variant statistics through the same SQL builder (analysis.queries + analysis.dialects).

Counts, units, clamped units and conversions must be equal exactly; float sums to 1e-12
relative (engines sum in different orders). DuckDB and chdb are optional packages (the ``dev``
and ``clickhouse`` extras): the engine is skipped when its package is missing.
"""
from __future__ import annotations

import math
import os
import random
from datetime import UTC, timedelta
from io import StringIO

import pytest

from analysis import dialects, engines, queries
from analysis.stats import VariantStats
from assignment.models import Exposure

from .test_queries import BOUNDARIES, T0, event, expose, make_experiment, store

EXACT = ("n", "clamped_units", "lower_rank", "upper_rank")
FLOATS = ("sum", "sum_sq", "den_sum", "den_sum_sq", "cross_sum", "pre_sum", "pre_sum_sq", "pre_cross",
          "pre_den_sum", "pre_den_sum_sq", "pre_num_den", "pre_num_x_den", "pre_den_x_num", "pre_den_x_den",
          "quantile_value", "quantile_lower", "quantile_upper")


def _factories():
    out = []
    for name, factory, module in (("duckdb", engines.duckdb_engine, "duckdb"),
                                  ("clickhouse", engines.chdb_engine, "chdb")):
        out.append(pytest.param(factory, id=name, marks=pytest.mark.skipif(
            not _importable(module), reason=f"{module} is not installed (optional extra)")))
    return out


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.fixture
def generated(db):
    """400 units in 3 variants over 5 days (two phases), ~1,600 events with values to 2 decimals,
    a few beyond the clamp limit, events exactly on window boundaries, one unit attribute."""
    rng = random.Random(20261202)
    experiment = make_experiment("cross")
    events = []
    for i in range(400):
        unit = f"u{i}"
        first_seen = T0 + timedelta(seconds=rng.randrange(0, 5 * 86400), microseconds=rng.randrange(10**6))
        attributes = {"beta": rng.random() < 0.5, "age": rng.choice([18, 30, 45])}
        if rng.random() < 0.8:
            attributes["country"] = rng.choice(["CN", "US", "US", "DE", "FR", "BR"])
        x = expose(experiment, unit, rng.choice(["control", "a", "b"]), first_seen, **attributes)
        if i % 3 == 0:
            Exposure.objects.filter(pk=x.pk).update(phase=2)
        for _ in range(rng.randrange(0, 9)):
            name = rng.choice(["purchase", "purchase", "checkout", "page_view", "other"])
            if rng.random() < 0.3:
                ts = first_seen + rng.choice(BOUNDARIES)
            else:
                ts = first_seen + timedelta(seconds=rng.uniform(-20 * 86400, 6 * 86400))
            value = None if rng.random() < 0.15 else round(rng.uniform(-5, 120), 2)
            if rng.random() < 0.01:
                value = rng.choice([3e15, -2e16])  # clamped to +-VALUE_LIMIT
            events.append(event(unit, name, ts, value))
    events += [event("stranger", "purchase", T0, 10.0)]
    store(*events)
    return experiment


def assert_same_stats(got: VariantStats, want: VariantStats, where: str) -> None:
    for name in EXACT:
        assert getattr(got, name) == getattr(want, name), f"{where}.{name}"
    for name in FLOATS:
        a, b = getattr(got, name), getattr(want, name)
        if b is None:
            assert a is None, f"{where}.{name}"
        else:
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=0 if b else 1e-300), f"{where}.{name}: {a!r} != {b!r}"
    for name in ("m2", "m3"):  # centred moments: at the scale of the raw sums they come from
        a, b = getattr(got, name), getattr(want, name)
        if b is None:
            assert a is None, f"{where}.{name}"
        else:
            scale = max(1.0, abs(want.sum_sq)) ** (1.0 if name == "m2" else 1.5)
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12 * scale), f"{where}.{name}: {a!r} != {b!r}"


def assert_same_tables(got, want, where="") -> None:
    assert list(got) == list(want), where
    for mkey in want:
        assert list(got[mkey]) == list(want[mkey])
        for vkey in want[mkey]:
            assert_same_stats(got[mkey][vkey], want[mkey][vkey], f"{where}{mkey}.{vkey}")


@pytest.mark.parametrize("factory", _factories())
def test_every_engine_gives_the_same_statistics(generated, factory):
    experiment = generated
    until = T0 + timedelta(days=3, microseconds=1)
    want = {
        "all": queries.metric_statistics(experiment),
        "until": queries.metric_statistics(experiment, until=until),
        "phase": queries.metric_statistics(experiment, phase=2),
        "counts": queries.exposure_counts(experiment),
        "daily": queries.daily_exposures(experiment),
        "segments": queries.segment_statistics(experiment, "country", max_segments=3),
        "beta": queries.segment_statistics(experiment, "beta", metrics=["revenue", "conv"]),
        "age": queries.segment_statistics(experiment, "age", metrics=["orders"], min_units=60),
    }
    # The data exercises what is compared.
    assert sum(vs.n for vs in want["all"]["conv"].values()) == 400
    assert sum(vs.clamped_units for vs in want["all"]["revenue"].values()) > 0
    assert any(vs.pre_sum for vs in want["all"]["revenue"].values())
    assert any(vs.pre_den_sum for vs in want["all"]["rpo"].values())  # CUPED for the ratio
    assert all(vs.quantile_lower is not None for vs in want["all"]["p90"].values())  # window functions
    assert "(other)" in want["segments"] and "(none)" in want["segments"]

    loaded = engines.from_django(factory)
    ran = []
    engine = dialects.Engine(loaded.dialect, lambda d, sql, params: ran.append(sql) or loaded.execute(d, sql, params))
    with dialects.using(engine):
        got = {
            "all": queries.metric_statistics(experiment),
            "until": queries.metric_statistics(experiment, until=until),
            "phase": queries.metric_statistics(experiment, phase=2),
            "counts": queries.exposure_counts(experiment),
            "daily": queries.daily_exposures(experiment),
            "segments": queries.segment_statistics(experiment, "country", max_segments=3),
            "beta": queries.segment_statistics(experiment, "beta", metrics=["revenue", "conv"]),
            "age": queries.segment_statistics(experiment, "age", metrics=["orders"], min_units=60),
        }
    assert len(ran) >= 10  # every query ran on the engine
    for key in ("all", "until", "phase"):
        assert_same_tables(got[key], want[key], f"{key}:")
    assert got["counts"] == want["counts"]
    assert got["daily"] == want["daily"]
    for key in ("segments", "beta", "age"):
        assert list(got[key]) == list(want[key]), key
        for seg in want[key]:
            assert_same_tables(got[key][seg], want[key][seg], f"{key}[{seg}]:")


def test_the_engine_is_scoped_to_the_block(generated):
    """Outside ``using`` the builder is back on Django's connection."""
    calls = []
    engine = dialects.Engine(dialects.DIALECTS["duckdb"], lambda d, sql, params: calls.append(sql) or [])
    with dialects.using(engine):
        assert queries.exposure_counts(generated) == {"control": 0, "a": 0, "b": 0}
    assert calls and dialects.current_engine() is None
    assert sum(queries.exposure_counts(generated).values()) == 400


# --- each dialect's fragments --------------------------------------------------------------------


def test_clickhouse_interval_is_a_literal_and_others_bind_a_parameter():
    ch, pg, lite, duck = (dialects.DIALECTS[n] for n in ("clickhouse", "postgresql", "sqlite", "duckdb"))
    assert ch.shift("t", -336) == ("(t + INTERVAL -336 HOUR)", [])
    assert pg.shift("t", 24) == ("(t + %s * INTERVAL '1 hour')", [24])
    assert lite.shift("t", 24) == ("abp_shift_hours(t, %s)", [24])
    assert duck.shift("t", 48) == ("(t + INTERVAL '48 hours')", [])
    with pytest.raises((TypeError, ValueError)):
        ch.shift("t", "1; DROP TABLE x")  # never spliced: int() or nothing


def test_filtered_aggregates_least_and_casts_per_dialect():
    ch, pg = dialects.DIALECTS["clickhouse"], dialects.DIALECTS["postgresql"]
    assert ch.filtered("COUNT", "*", "a = 1") == "countIf(a = 1)"
    assert ch.filtered("SUM", "v", "a = 1") == "sumIf(v, a = 1)"
    assert pg.filtered("COUNT", "*", "a = 1") == "COUNT(*) FILTER (WHERE a = 1)"
    assert (ch.least, pg.least, dialects.DIALECTS["sqlite"].least) == ("least", "LEAST", "MIN")
    assert ch.cast_float("COALESCE(x, 0)") == "CAST(COALESCE(x, 0) AS Float64)"
    assert (ch.cte("reused"), pg.cte("reused"), pg.cte("exposures"), dialects.DIALECTS["sqlite"].cte("exposures")) == (
        "", "MATERIALIZED ", "", "MATERIALIZED ")


def test_unknown_vendor_is_refused():
    with pytest.raises(ValueError, match="oracle"):
        dialects.for_vendor("oracle")


# --- ClickHouse as the analysis store ------------------------------------------------------------

chdb_only = pytest.mark.skipif(not _importable("chdb"), reason="chdb is not installed (clickhouse extra)")


@chdb_only
def test_clickhouse_counts_a_row_inserted_twice_once(generated):
    """A retried batch: rows inserted again into the ReplacingMergeTrees (separate parts, merges
    stopped); FINAL reads give Django's statistics unchanged."""
    from analysis.models import Event

    want = queries.metric_statistics(generated)
    events, exposures = list(Event.objects.all()), list(Exposure.objects.all())
    engine = engines.chdb_engine(events, exposures)
    for table in ("analysis_event", "assignment_exposure"):
        engine.execute(engine.dialect, f'SYSTEM STOP MERGES "{table}"', [])
    engines._load_rows(engine, events[:300], exposures[:60])
    (raw,) = engine.execute(engine.dialect, 'SELECT count() FROM "analysis_event"', [])
    assert raw[0] == len(events) + 300  # both copies are stored ...
    with dialects.using(engine):
        assert_same_tables(queries.metric_statistics(generated), want)  # ... and count once


class _ChdbClient:
    """What the code needs of a ``clickhouse_connect`` client, served by chdb (the same engine)."""

    def __init__(self):
        from chdb import dbapi

        self.conn = dbapi.connect()
        self.queries = []

    def query(self, sql, parameters=()):
        self.queries.append(sql)
        cur = self.conn.cursor()
        cur.execute(sql, tuple(parameters))
        return type("Result", (), {"result_rows": list(cur.fetchall() or [])})()


@chdb_only
def test_analytics_backend_clickhouse_reads_events_from_clickhouse(generated, settings, monkeypatch):
    from django.core.management import call_command

    from analysis import clickhouse
    from analysis.models import Event

    want = queries.metric_statistics(generated)
    client = _ChdbClient()
    cur = client.conn.cursor()
    for table in ("analysis_event", "assignment_exposure"):
        cur.execute(f'DROP TABLE IF EXISTS "{table}"')
    monkeypatch.setattr(clickhouse, "_client", lambda url: client)
    settings.ANALYTICS_BACKEND, settings.CLICKHOUSE_URL = "clickhouse", "http://default@ch:8123/default"
    call_command("clickhouse_init")
    call_command("clickhouse_init")  # idempotent
    engine = engines.chdb_connection_engine(client.conn)
    engines._load_rows(engine, Event.objects.all(), Exposure.objects.all())
    client.queries.clear()
    assert_same_tables(queries.metric_statistics(generated), want)
    assert queries.exposure_counts(generated) == {k: v.n for k, v in want["conv"].items()}
    assert any("FINAL" in sql and "countIf" in sql for sql in client.queries)  # it ran on ClickHouse


@pytest.mark.clickhouse_server
@pytest.mark.skipif(not os.environ.get("CLICKHOUSE_TEST_URL"), reason="needs CLICKHOUSE_TEST_URL (a scratch database)")
def test_a_real_clickhouse_server_gives_the_same_statistics(generated, settings):
    """The same as above over the network (clickhouse-connect): network, auth and server DDL.
    Point CLICKHOUSE_TEST_URL at a scratch database: its two tables are dropped."""
    from django.core.management import call_command

    from analysis import clickhouse
    from analysis.models import Event

    want = queries.metric_statistics(generated)
    settings.ANALYTICS_BACKEND, settings.CLICKHOUSE_URL = "clickhouse", os.environ["CLICKHOUSE_TEST_URL"]
    engine = clickhouse.settings_engine()
    for table in ("analysis_event", "assignment_exposure"):
        engine.execute(engine.dialect, f'DROP TABLE IF EXISTS "{table}"', [])
    call_command("clickhouse_init")
    engines._load_rows(engine, Event.objects.all(), Exposure.objects.all())
    assert_same_tables(queries.metric_statistics(generated), want)


def test_analytics_backend_settings_are_checked(settings):
    from django.core.exceptions import ImproperlyConfigured

    from analysis import clickhouse

    settings.ANALYTICS_BACKEND, settings.CLICKHOUSE_URL = "clickhouse", ""
    with pytest.raises(ImproperlyConfigured, match="CLICKHOUSE_URL"):
        clickhouse.settings_engine()
    settings.ANALYTICS_BACKEND = "bigquery"
    with pytest.raises(ImproperlyConfigured, match="ANALYTICS_BACKEND"):
        clickhouse.settings_engine()
    settings.ANALYTICS_BACKEND = "django"
    assert clickhouse.settings_engine() is None


def test_clickhouse_init_prints_replacing_merge_trees_with_monthly_partitions():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("clickhouse_init", "--print", stdout=out)
    text = out.getvalue()
    assert text.count("ENGINE = ReplacingMergeTree") == 2
    assert 'PARTITION BY toYYYYMM("timestamp") ORDER BY "event_id"' in text
    # Exposures: the earliest first_seen wins (the upsert's rule); not partitioned by it, since
    # it can still move and copies of one key must meet in one partition.
    assert 'ENGINE = ReplacingMergeTree("ver") ORDER BY ("experiment_id", "phase", "unit_id")' in text
    assert 'PARTITION BY toYYYYMM("first_seen")' not in text


def test_clickhouse_reads_the_event_join_once(generated):
    """ClickHouse inlines CTEs: a pilot CTE read back from v would run the event join twice
    (2.3x slower at 1M events). Its dialect takes the pilot means as window aggregates and puts
    the exposures on the right of the join (the hash table's build side); PostgreSQL keeps its
    materialised CTEs."""
    ran = []
    stamp = "2026-11-20 12:00:00.000000"

    def execute(d, sql, params):
        ran.append(sql)
        return [(stamp, stamp)] if sql.startswith("SELECT MIN(") else []

    for name in ("clickhouse", "postgresql"):
        with dialects.using(dialects.Engine(dialects.DIALECTS[name], execute)):
            queries._metric_sums(queries._specs(generated), queries._Exposures(generated, None), None, None, [])
    ch_sql, pg_sql = ran[1], ran[3]
    assert "OVER ()" in ch_sql and "CROSS JOIN c" not in ch_sql
    assert '"analysis_event" e FINAL JOIN x ON' in ch_sql
    assert "do_not_merge_across_partitions" not in ch_sql  # copies may sit in two months' partitions
    assert "CROSS JOIN c" in pg_sql and "OVER ()" not in pg_sql and "FROM x JOIN" in pg_sql


@chdb_only
def test_clickhouse_init_copy_moves_a_deployment_over(generated, settings):
    """``clickhouse_init --copy``: Django's events and exposures into ClickHouse (chdb:// client);
    run twice, the reports are unchanged (copies read once)."""
    from django.core.management import call_command

    from analysis import clickhouse
    from analysis.models import Event

    Event.objects.filter(pk__in=Event.objects.order_by("pk").values("pk")[:5]).update(properties={"plan": "pro"})
    want = queries.metric_statistics(generated)
    settings.ANALYTICS_BACKEND, settings.CLICKHOUSE_URL = "clickhouse", "chdb://"
    clickhouse._client.cache_clear()
    try:
        for table in clickhouse.tables():
            clickhouse.client().command(f'DROP TABLE IF EXISTS "{table}"')
        call_command("clickhouse_init", "--copy", stdout=StringIO())
        call_command("clickhouse_init", "--copy", stdout=StringIO())
        assert_same_tables(queries.metric_statistics(generated), want)
        (row,) = clickhouse.client().query('SELECT count(), countIf(properties != \'{}\') FROM "analysis_event" FINAL').result_rows
        assert row == (Event.objects.count(), 5)
        # received_at is copied: a later copy of one of these events (a retry over the switch) loses.
        first = Event.objects.order_by("pk").first()
        (got,) = clickhouse.client().query(
            'SELECT toString(received_at) FROM "analysis_event" WHERE event_id = %s LIMIT 1',
            parameters=(first.event_id,)).result_rows
        assert got[0] == first.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    finally:
        clickhouse._client.cache_clear()
