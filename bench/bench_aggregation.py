"""Aggregation speed and memory: analysis.queries.metric_statistics on PostgreSQL at scale.

Creates a throw-away database (``abp_bench_agg``), one experiment with 3 variants and 5 metrics
(conversion with a 7-day window, capped count, capped sum, ratio, a second conversion) and CUPED
on, then grows the event table step by step (default 1M then 10M events; 10 events per unit, so
100k then 1M exposed units) and at each size times ``metric_statistics`` (and the other queries)
and records the Python process's memory: peak RSS (``ru_maxrss``, never decreases, so a flat
figure across sizes means memory does not grow with the data) and the tracemalloc peak of the
call itself. Data is generated inside PostgreSQL (``INSERT ... SELECT generate_series``), with the
secondary indexes dropped during the load and rebuilt after it.

    .venv/bin/python bench/bench_aggregation.py [--events 1000000,10000000] [--explain] [--quantile]

``--quantile`` adds a p90 metric (per-unit purchase value, ``analysis.quantiles``: a
``ROW_NUMBER()`` query of its own) and times it separately from the sum metrics.

Takes a few minutes at 10M events. Needs PostgreSQL at postgres://postgres@127.0.0.1:5432.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432")
EVENT_NAMES = ["purchase", "page_view", "add_to_cart", "checkout", "refund"]
METRICS = [
    {"key": "b-purchase", "name": "Purchase", "event": "purchase", "kind": "conversion", "conversion_window_hours": 168},
    {"key": "b-orders", "name": "Orders", "event": "purchase", "kind": "count", "cap": 5},
    {"key": "b-revenue", "name": "Revenue", "event": "purchase", "kind": "sum", "cap": 500.0},
    {"key": "b-rpo", "name": "Revenue per cart", "event": "purchase", "kind": "ratio",
     "numerator_aggregation": "sum", "denominator_event": "add_to_cart", "denominator_aggregation": "count"},
    {"key": "b-views", "name": "Page views", "event": "page_view", "kind": "count", "conversion_window_hours": 72},
]
QUANTILE_METRIC = {"key": "b-p90", "name": "Purchase value p90", "event": "purchase", "kind": "quantile",
                   "quantile": "0.9", "numerator_aggregation": "sum", "conversion_window_hours": 168}
SECONDARY_INDEXES = ["event_unit_name_time", "event_name_time"]


def create_database(name: str) -> str:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_SERVER}/{name}"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def setup_experiment(metrics=METRICS):
    from experiments import services
    from experiments.models import Metric

    for m in metrics:
        Metric.objects.create(**m)
    experiment = services.create_experiment({
        "key": "bench-agg", "name": "Aggregation bench", "traffic_allocation": 100, "cuped": True,
        "variants": [{"key": "control", "weight": 34, "is_control": True},
                     {"key": "a", "weight": 33}, {"key": "b", "weight": 33}],
        "metrics": [{"metric": m["key"], "role": "primary"} for m in metrics],
        "targeting": [],
    })
    return experiment


def grow(experiment, events_before: int, events: int, units: int) -> float:
    """Add exposures up to ``units`` and events up to ``events``; return seconds."""
    from django.db import connection

    variant_ids = list(experiment.variants.values_list("pk", flat=True))
    started = time.perf_counter()
    with connection.cursor() as c:
        c.execute("SET maintenance_work_mem = '512MB'")
        c.execute("SELECT COUNT(*) FROM assignment_exposure")
        have_units = c.fetchone()[0]
        # Units enrol over 14 days from 2026-10-01; attributes as assignment records them.
        c.execute(
            """
            INSERT INTO assignment_exposure (experiment_id, phase, variant_id, unit_id, first_seen, last_seen, attributes)
            SELECT %s, 1, (%s::bigint[])[1 + i %% 3], 'u-' || i,
                   TIMESTAMPTZ '2026-10-01' + (i %% 1209600) * INTERVAL '1 second',
                   TIMESTAMPTZ '2026-10-15',
                   jsonb_build_object('country', (ARRAY['CN','US','DE','FR','BR','JP'])[1 + i %% 6],
                                      'platform', (ARRAY['ios','android','web'])[1 + (i / 7) %% 3])
            FROM generate_series(%s, %s) AS i
            """,
            [experiment.pk, variant_ids, have_units + 1, units],
        )
        for name in SECONDARY_INDEXES:
            c.execute(f"DROP INDEX IF EXISTS {name}")
        # Events of random units from 14 days before the first exposure to 21 days after it.
        c.execute(
            """
            INSERT INTO analysis_event (event_id, unit_id, event, value, "timestamp", properties, received_at)
            SELECT 'e-' || g, 'u-' || (1 + (hashint8(g) & 2147483647) %% %s),
                   (ARRAY['purchase','page_view','page_view','add_to_cart','checkout','refund'])[1 + (hashint8(g + 7) & 2147483647) %% 6],
                   CASE WHEN g %% 3 = 0 THEN round((random() * 200)::numeric, 2)::float8 END,
                   TIMESTAMPTZ '2026-09-17' + random() * INTERVAL '49 days',
                   '{}'::jsonb, now()
            FROM generate_series(%s, %s) AS g
            """,
            [units, events_before + 1, events],
        )
        c.execute('CREATE INDEX event_unit_name_time ON analysis_event (unit_id, event, "timestamp")')
        c.execute('CREATE INDEX event_name_time ON analysis_event (event, "timestamp")')
        c.execute("RESET maintenance_work_mem")
    connection.close()
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE analysis_event")
        conn.execute("VACUUM ANALYZE assignment_exposure")
    return time.perf_counter() - started


def explain(experiment) -> None:
    """Print EXPLAIN ANALYZE of the metric query (captured from the real call)."""
    from django.db import connection

    from analysis import queries

    captured = []
    original = queries._fetch

    def capture(sql, params, *, heavy=False):
        if heavy:
            captured.append((sql, list(params)))
        return original(sql, params, heavy=heavy)

    queries._fetch = capture
    try:
        queries.metric_statistics(experiment)
    finally:
        queries._fetch = original
    sql, params = captured[0]
    with connection.cursor() as c:
        c.execute("SET work_mem = '256MB'")
        c.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        print("\n".join(row[0] for row in c.fetchall()))
        c.execute("RESET work_mem")


def table_sizes() -> str:
    """Heap and index sizes of the event table (what grows first)."""
    from django.db import connection

    with connection.cursor() as c:
        c.execute(
            "SELECT pg_size_pretty(pg_table_size('analysis_event')), "
            "pg_size_pretty(pg_indexes_size('analysis_event'))"
        )
        heap, indexes = c.fetchone()
        c.execute(
            "SELECT indexrelid::regclass::text, pg_size_pretty(pg_relation_size(indexrelid)) "
            "FROM pg_index WHERE indrelid = 'analysis_event'::regclass ORDER BY 1"
        )
        each = ", ".join(f"{name} {size}" for name, size in c.fetchall())
    return f"event table {heap} + indexes {indexes} ({each})"


def measure(experiment, label: str) -> dict:
    from analysis import queries

    out = {}
    tracemalloc.start()
    started = time.perf_counter()
    stats = queries.metric_statistics(experiment)
    out["metric_statistics"] = time.perf_counter() - started
    out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    if QUANTILE_METRIC["key"] in stats:
        started = time.perf_counter()
        queries.metric_statistics(experiment, metrics=[QUANTILE_METRIC["key"]])
        out["quantile_s"] = time.perf_counter() - started
        q = stats[QUANTILE_METRIC["key"]]["control"]
        out["quantile"] = (f"p90 alone {out['quantile_s']:.2f} s (control: n={q.n:,} p90={q.quantile_value} "
                           f"CI {q.quantile_lower}-{q.quantile_upper}, ranks {q.lower_rank}-{q.upper_rank})")
    started = time.perf_counter()
    segments = queries.segment_statistics(experiment, "country")
    out["segment_statistics"] = time.perf_counter() - started
    started = time.perf_counter()
    queries.exposure_counts(experiment)
    queries.daily_exposures(experiment)
    out["exposures"] = time.perf_counter() - started
    out["rss_peak_mb"] = rss_mb()
    out["rss_now_mb"] = current_rss_mb()
    out["units"] = sum(v.n for v in stats["b-purchase"].values())
    out["segments"] = len(segments)
    conv = stats["b-purchase"]["control"]
    out["sample"] = f"control: n={conv.n:,} conversions={conv.sum:,.0f} pre={conv.pre_sum:,.0f}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", default="1000000,10000000",
                        help="comma-separated sizes, ascending (the table grows from one to the next)")
    parser.add_argument("--events-per-unit", type=int, default=10)
    parser.add_argument("--database", default="abp_bench_agg")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE at each size")
    parser.add_argument("--quantile", action="store_true", help="add a p90 metric and time it on its own")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.events.split(","))

    os.environ["DATABASE_URL"] = create_database(args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("REDIS_URL", None)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=os.environ, check=True)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    experiment = setup_experiment([*METRICS, QUANTILE_METRIC] if args.quantile else METRICS)
    print(f"{'events':>12s} {'units':>10s} {'load s':>8s} {'metric_statistics s':>20s} "
          f"{'segments s':>11s} {'exposures s':>12s} {'peak RSS MB':>12s} {'tracemalloc MB':>15s}", flush=True)
    before = 0
    results = []
    for size in sizes:
        units = max(1, size // args.events_per_unit)
        load = grow(experiment, before, size, units)
        before = size
        if args.explain:
            explain(experiment)
        r = measure(experiment, f"{size:,}")
        results.append((size, r))
        print(f"{size:>12,} {r['units']:>10,} {load:>8.1f} {r['metric_statistics']:>20.2f} "
              f"{r['segment_statistics']:>11.2f} {r['exposures']:>12.2f} {r['rss_peak_mb']:>12.0f} "
              f"{r['tracemalloc_peak_mb']:>15.2f}   {r['sample']}", flush=True)
        print(f"{'':>12s} {table_sizes()}", flush=True)
        if "quantile" in r:
            print(f"{'':>12s} {r['quantile']}", flush=True)
    biggest = results[-1][1]
    print(f"\ngoal metric_statistics < 30 s at {results[-1][0]:,} events: "
          f"{'met' if biggest['metric_statistics'] < 30 else 'NOT met'} ({biggest['metric_statistics']:.1f} s); "
          f"peak RSS {biggest['rss_peak_mb']:.0f} MB (goal < 300 MB: "
          f"{'met' if biggest['rss_peak_mb'] < 300 else 'NOT met'})")


if __name__ == "__main__":
    main()
