"""Per-day series speed: ``analysis.daily`` next to ``metric_statistics`` on PostgreSQL.

Same throw-away data as ``bench_aggregation`` (3 variants, 5 metrics, CUPED on, 10 events per
unit, exposures over 14 days, events over 49 days): times the report's aggregation query, the
one daily query (per-unit-day increments with window functions) and the whole ``daily_series``
block (query + the statistics engine once per day).

    .venv/bin/python bench/bench_daily.py [--events 1000000] [--database wt_daily_bench]

Needs PostgreSQL at postgres://postgres@127.0.0.1:5432; drops its database at the end.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_aggregation as agg  # noqa: E402 - the sibling script's data generator


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def explain(experiment, until) -> None:
    from django.db import connection

    from analysis import daily, queries

    captured = []
    original = queries._fetch

    def capture(sql, params, *, heavy=False):
        if heavy:
            captured.append((sql, list(params)))
        return original(sql, params, heavy=heavy)

    queries._fetch = capture
    try:
        daily.daily_increments(experiment, until=until)
    finally:
        queries._fetch = original
    sql, params = captured[0]
    with connection.cursor() as c:
        c.execute("SET work_mem = '256MB'")
        c.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        print("\n".join(row[0] for row in c.fetchall()))
        c.execute("RESET work_mem")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--database", default="wt_daily_bench")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the daily query")
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = agg.create_database(args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("REDIS_URL", None)
    subprocess.run([agg.PYTHON, "manage.py", "migrate", "-v0"], cwd=agg.ROOT, env=os.environ, check=True)
    sys.path.insert(0, str(agg.ROOT))
    import django

    django.setup()
    from analysis import daily, queries, reports
    from experiments.models import Experiment

    experiment = agg.setup_experiment()
    load = agg.grow(experiment, 0, args.events, max(1, args.events // 10))
    experiment = Experiment.objects.prefetch_related("variants").get(pk=experiment.pk)
    until = datetime(2026, 11, 5, 12, tzinfo=UTC)  # the last day partial
    ems = list(experiment.experiment_metrics.select_related("metric"))
    variants = list(experiment.variants.all())
    control = next(v for v in variants if v.is_control)
    common = {"experiment": experiment.key, "control": control.key, "weights": {v.key: float(v.weight) for v in variants},
              "alpha": 0.05, "correction": "holm", "sequential": False, "cuped": True, "power": 0.8}
    if args.explain:
        explain(experiment, until)
    stats_s = best_of(lambda: queries.metric_statistics(experiment, until=until), args.repeat)
    inc_s = best_of(lambda: daily.daily_increments(experiment, until=until), args.repeat)
    series = {}

    def whole():
        series["out"] = daily.daily_series(experiment, until=until, common=common, metric_links=ems,
                                           variant_keys={v.pk: v.key for v in variants})
    series_s = best_of(whole, args.repeat)
    payload = {"daily_series": series["out"]}
    report_s = best_of(lambda: reports.build_payload(experiment, until=until, include_segments=False), 1)
    print(f"events {args.events:,}, units {args.events // 10:,}, load {load:.1f} s, days {len(payload['daily_series']['days'])}")
    print(f"{'metric_statistics (report query)':<40s} {stats_s:8.2f} s")
    print(f"{'daily_increments (one daily query)':<40s} {inc_s:8.2f} s  ({inc_s / stats_s:.1f}x)")
    print(f"{'daily_series (query + stats per day)':<40s} {series_s:8.2f} s")
    print(f"{'build_payload without segments':<40s} {report_s:8.2f} s")
    import psycopg
    from django.db import connection

    connection.close()
    with psycopg.connect(f"{agg.PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
