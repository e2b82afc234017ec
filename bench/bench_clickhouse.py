"""Aggregation on PostgreSQL vs ClickHouse (chdb, in-process) through the same query builder.

Builds the ``bench_aggregation`` data set in a throw-away PostgreSQL database (one experiment,
3 variants, 5 metrics, CUPED on; 10 events per unit), copies the event and exposure tables into
ClickHouse (chdb, the ``clickhouse_init`` DDL: ReplacingMergeTree, monthly partitions, read with
FINAL), then times (on chdb both as inserted, with intersecting parts FINAL merges at read time,
and after ``OPTIMIZE ... FINAL``) ``metric_statistics`` and ``segment_statistics`` on each engine and checks
that both give the same per-variant statistics (counts exactly, float sums to 1e-12 relative).

    .venv/bin/python bench/bench_clickhouse.py [--events 1000000] [--via-stream] [--reuse]

``--via-stream`` fills ClickHouse the production way instead (the Redis Stream and the loader,
many INSERTs of ``--rows`` rows, chdb in a directory): the loader's rate at that size, and the
report on the parts the loader made (needs Redis, ``BENCH_REDIS_URL``).

Needs PostgreSQL at postgres://postgres@127.0.0.1:5432 and the ``clickhouse`` extra (chdb).
chdb runs ClickHouse's engine in this process on this machine's cores: it measures the query
engine, not a ClickHouse server (network, replication, distributed tables).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_aggregation import PYTHON, ROOT, create_database, grow, rss_mb, setup_experiment  # noqa: E402

FLOATS = ("sum", "sum_sq", "den_sum", "den_sum_sq", "cross_sum", "pre_sum", "pre_sum_sq", "pre_cross")


def export(directory: str) -> dict[str, str]:
    """The two tables as CSV files (timestamps as UTC text, NULL as \\N)."""
    import psycopg

    queries = {
        "events": "SELECT event_id, unit_id, event, value, "
                  "to_char(\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM analysis_event",
        "exposures": "SELECT id, experiment_id, variant_id, unit_id, "
                     "to_char(first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), attributes::text, phase "
                     "FROM assignment_exposure",
    }
    paths = {}
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        for name, sql in queries.items():
            paths[name] = os.path.join(directory, f"{name}.csv")
            with open(paths[name], "wb") as f, cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, NULL '\\N')") as copy:
                for chunk in copy:
                    f.write(chunk)
    return paths


def load_chdb(paths: dict[str, str]):
    from chdb import dbapi

    from analysis import clickhouse, engines

    conn = dbapi.connect()
    cur = conn.cursor()
    for table in ("analysis_event", "assignment_exposure"):
        cur.execute(f'DROP TABLE IF EXISTS "{table}"')
    for sql in clickhouse.ddl():
        cur.execute(sql)
    cur.execute(
        'INSERT INTO "analysis_event" (event_id, unit_id, event, value, "timestamp") '
        "SELECT event_id, unit_id, event, value, parseDateTime64BestEffort(ts, 6, 'UTC') FROM file("
        f"'{paths['events']}', 'CSV', 'event_id String, unit_id String, event String, value Nullable(Float64), ts String')"
    )
    cur.execute(
        'INSERT INTO "assignment_exposure" (id, experiment_id, variant_id, unit_id, first_seen, attributes, phase) '
        "SELECT id, e, v, u, parseDateTime64BestEffort(ts, 6, 'UTC'), a, p FROM file("
        f"'{paths['exposures']}', 'CSV', 'id Int64, e Int64, v Int64, u String, ts String, a String, p UInt16')"
    )
    return engines.chdb_connection_engine(conn)


def load_via_stream(directory: str, rows_per_insert: int) -> tuple[object, dict[str, float]]:
    """ClickHouse filled the production way: every event and exposure of the PostgreSQL tables
    appended to the Redis Stream in entries of 1,000 (as the endpoint and the mirror do), then
    drained by ``analysis.loader`` (``CLICKHOUSE_LOAD_ROWS`` rows per INSERT, the erasure lock and
    tombstone check included) into a chdb directory. Returns the engine and the timings."""
    import psycopg
    from django.conf import settings
    from django.core.management import call_command

    from analysis import clickhouse, loader, stream

    settings.ANALYTICS_BACKEND, settings.CLICKHOUSE_URL = "clickhouse", f"chdb://{directory}/ch"
    settings.REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    settings.CLICKHOUSE_STREAM_KEY = f"bench:chstream:{os.getpid()}"
    settings.CLICKHOUSE_STREAM_MAX_ENTRIES = 10**7
    settings.CLICKHOUSE_LOAD_ROWS = rows_per_insert
    clickhouse._client.cache_clear()
    call_command("clickhouse_init", verbosity=0)
    redis = stream.redis_client()
    redis.delete(settings.CLICKHOUSE_STREAM_KEY)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    events = 0
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        with conn.cursor(name="events") as cur:
            cur.itersize = 10_000
            cur.execute("SELECT event_id, unit_id, event, value, \"timestamp\", properties::text, received_at "
                        "FROM analysis_event")
            while batch := cur.fetchmany(1000):
                stream.append_events([r[:6] for r in batch], batch[0][6])
                events += len(batch)
        with conn.cursor(name="exposures") as cur:
            cur.execute("SELECT experiment_id, variant_id, unit_id, extract(epoch FROM first_seen), attributes, "
                        "extract(epoch FROM last_seen), phase FROM assignment_exposure")
            while batch := cur.fetchmany(1000):
                stream.append_exposures([(e, v, u, float(f), a, float(last), p) for e, v, u, f, a, last, p in batch])
    timings["append_s"] = time.perf_counter() - started
    timings["entries"] = stream.pending()
    timings["redis_mb"] = redis.info("memory")["used_memory"] / 2**20
    started = time.perf_counter()
    result = loader.load(max_seconds=10**6)
    timings["drain_s"] = time.perf_counter() - started
    timings["loaded"] = result.events
    timings["rounds"] = result.rounds
    assert result.events == events and stream.pending() == 0, (result, events)
    redis.delete(settings.CLICKHOUSE_STREAM_KEY)
    return clickhouse.client_engine(clickhouse.client()), timings


def optimize(engine) -> None:
    """Merge each partition into one part (what background merges reach over time)."""
    for table in ("analysis_event", "assignment_exposure"):
        engine.execute(engine.dialect, f'OPTIMIZE TABLE "{table}" FINAL', [])


def postgres_cpu(fn) -> float:
    """CPU seconds PostgreSQL spends on ``fn``'s queries, without parallel workers (their CPU is
    not attributable): the backend's utime + stime from /proc. The machine is shared, so CPU
    time is the steadier measure of the work; wall time is what a user waits."""
    from django.db import connection

    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        (pid,) = c.fetchone()
        c.execute("SET max_parallel_workers_per_gather = 0")

    def ticks() -> int:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    before = ticks()
    fn()
    used = (ticks() - before) / os.sysconf("SC_CLK_TCK")
    with connection.cursor() as c:
        c.execute("RESET max_parallel_workers_per_gather")
    return used


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def best_of_two(fn):
    """(result, first run s, best run s): the first run pays caches and (chdb) warm-up."""
    result, first = timed(fn)
    _, second = timed(fn)
    return result, first, min(first, second)


def compare(a, b) -> str:
    worst = 0.0
    for mkey in a:
        for vkey in a[mkey]:
            x, y = a[mkey][vkey], b[mkey][vkey]
            assert (x.n, x.clamped_units) == (y.n, y.clamped_units), (mkey, vkey)
            if mkey == "b-purchase":
                assert x.sum == y.sum, (mkey, vkey)  # conversions exactly
            for name in FLOATS:
                u, v = getattr(x, name), getattr(y, name)
                if v:
                    worst = max(worst, abs(u - v) / abs(v))
                    assert math.isclose(u, v, rel_tol=1e-12), (mkey, vkey, name, u, v)
    return f"identical (counts exactly, worst float relative difference {worst:.1e})"


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--events-per-unit", type=int, default=10)
    parser.add_argument("--database", default="abp_bench_ch")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the database a previous run left (same --events): skips the PostgreSQL load")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--via-stream", action="store_true",
                        help="fill ClickHouse through the Redis Stream and the loader (many INSERTs of "
                             "--rows rows), not one INSERT from a CSV file")
    parser.add_argument("--rows", type=int, default=50_000, help="rows per loader INSERT (--via-stream)")
    args = parser.parse_args()

    if args.reuse:
        from bench_aggregation import PG_SERVER

        os.environ["DATABASE_URL"] = f"{PG_SERVER}/{args.database}"
    else:
        os.environ["DATABASE_URL"] = create_database(args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("REDIS_URL", None)
    if not args.reuse:
        subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=os.environ, check=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    from analysis import dialects, queries

    units = max(1, args.events // args.events_per_unit)
    if args.reuse:
        from experiments.models import Experiment

        experiment, pg_load = Experiment.objects.get(), float("nan")
    else:
        with connection.cursor() as c:  # bench_aggregation's loader predates phases (throw-away database)
            c.execute("ALTER TABLE assignment_exposure ALTER COLUMN phase SET DEFAULT 1")
        experiment = setup_experiment()
        pg_load = grow(experiment, 0, args.events, units)
    pg_stats, pg_first, pg_metric = best_of_two(lambda: queries.metric_statistics(experiment))
    pg_segments, _, pg_seg = best_of_two(lambda: queries.segment_statistics(experiment, "country"))
    pg_cpu = postgres_cpu(lambda: queries.metric_statistics(experiment))
    pg_rss = rss_mb()

    tmpdir = tempfile.TemporaryDirectory()
    streamed: dict[str, float] = {}
    if args.via_stream:
        (engine, streamed), ch_load = timed(lambda: load_via_stream(tmpdir.name, args.rows))
        export_s = 0.0
        (parts,) = engine.execute(engine.dialect, "SELECT count() FROM system.parts WHERE active AND table = 'analysis_event'", [])
        print(f"via the stream: {streamed['append_s']:.1f} s to append {args.events:,} events and the exposures "
              f"({streamed['entries']:,.0f} entries, Redis {streamed['redis_mb']:,.0f} MB); loader "
              f"{streamed['drain_s']:.1f} s ({streamed['loaded'] / streamed['drain_s']:,.0f} events/s, "
              f"{streamed['rounds']:.0f} rounds); {parts[0]} event parts right after", flush=True)
    else:
        paths, export_s = timed(lambda: export(tmpdir.name))
        engine, ch_load = timed(lambda: load_chdb(paths))
    (parts,) = engine.execute(engine.dialect, "SELECT count() FROM system.parts WHERE active AND table = 'analysis_event'", [])
    with dialects.using(engine):  # as inserted: several intersecting parts, FINAL merges at read time
        ch_unmerged_stats, _, ch_unmerged = best_of_two(lambda: queries.metric_statistics(experiment))
    _, optimize_s = timed(lambda: optimize(engine))
    with dialects.using(engine):
        ch_stats, ch_first, ch_metric = best_of_two(lambda: queries.metric_statistics(experiment))
        started = time.process_time()
        queries.metric_statistics(experiment)
        ch_cpu = time.process_time() - started
        ch_segments, _, ch_seg = best_of_two(lambda: queries.segment_statistics(experiment, "country"))

    class NoFinal(dialects.ClickHouse):  # what the FINAL (deduplicating) reads cost
        def source(self, table: str, alias: str = "") -> str:
            return dialects.Dialect.source(self, table, alias)

    with dialects.using(dialects.Engine(NoFinal(), engine.execute)):
        _, _, ch_nofinal = best_of_two(lambda: queries.metric_statistics(experiment))
    verdict = compare(ch_stats, pg_stats)
    compare(ch_unmerged_stats, pg_stats)
    for seg in pg_segments:
        compare(ch_segments[seg], pg_segments[seg])

    print(f"{args.events:,} events, {units:,} units, 5 metrics, CUPED; peak RSS after PostgreSQL "
          f"{pg_rss:.0f} MB, after chdb {rss_mb():.0f} MB")
    print(f"{'engine':<12s} {'load s':>8s} {'metric_statistics s (1st)':>26s} {'segment_statistics s':>21s}")
    print(f"{'PostgreSQL':<12s} {pg_load:>8.1f} {pg_metric:>20.2f} ({pg_first:.2f}) {pg_seg:>21.2f}")
    print(f"{'chdb':<12s} {ch_load:>8.1f} {ch_metric:>20.2f} ({ch_first:.2f}) {ch_seg:>21.2f}   "
          f"(+ {export_s:.1f} s CSV export; without FINAL: {ch_nofinal:.2f} s)")
    print(f"CPU seconds of one metric_statistics: PostgreSQL {pg_cpu:.1f} (serial plan, backend process), "
          f"chdb {ch_cpu:.1f} (all its threads): x{pg_cpu / ch_cpu:.1f}; load average {os.getloadavg()[0]:.1f}")
    print(f"chdb before OPTIMIZE FINAL ({parts[0]} event parts as {'loaded' if args.via_stream else 'inserted'}): metric_statistics "
          f"{ch_unmerged:.2f} s; OPTIMIZE FINAL took {optimize_s:.1f} s")
    if args.drop:
        connection.close()
        import psycopg
        from bench_aggregation import PG_SERVER

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    print(f"speed-up metric_statistics x{pg_metric / ch_metric:.1f} merged, x{pg_metric / ch_unmerged:.1f} as "
          f"{'loaded' if args.via_stream else 'inserted'}, segments x{pg_seg / ch_seg:.1f}; statistics {verdict}")
    tmpdir.cleanup()


if __name__ == "__main__":
    main()
