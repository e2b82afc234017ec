"""The report on ClickHouse alone at sizes PostgreSQL is not run at here (100M events).

Generates the ``bench_aggregation`` data shape directly in ClickHouse (chdb, in a directory):
units enrol over 14 days from 2026-10-01 in 3 variants, 10 events per unit over 49 days, a
third with values; the same SQL recipe as ``bench_aggregation.grow``, with ClickHouse's hash and
random functions, inserted in chunks of 10M rows (as a loader's many inserts would leave several
parts). Then times ``metric_statistics`` and ``segment_statistics`` as inserted and after
``OPTIMIZE ... FINAL``, and prints the peak RSS. The experiment's definition (5 metrics, CUPED)
comes from a database ``bench_clickhouse.py`` left (``--database``, default ``abp_bench_ch10``).

    .venv/bin/python bench/bench_clickhouse_scale.py [--events 100000000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_aggregation import PG_SERVER, ROOT, rss_mb  # noqa: E402
from bench_clickhouse import best_of_two, timed  # noqa: E402

CHUNK = 10_000_000


def generate(engine, experiment, events: int, units: int) -> None:
    ex = lambda sql: engine.execute(engine.dialect, sql, [])  # noqa: E731
    variants = list(experiment.variants.order_by("pk").values_list("pk", flat=True))
    ex('INSERT INTO "assignment_exposure" (experiment_id, phase, variant_id, unit_id, first_seen, last_seen, attributes) '
       f"SELECT {experiment.pk}, 1, {variants}[1 + i % 3], concat('u-', toString(i)), "
       "toDateTime64('2026-10-01 00:00:00', 6, 'UTC') + toIntervalSecond(i % 1209600), "
       "toDateTime64('2026-10-15 00:00:00', 6, 'UTC'), "
       "concat('{\"country\": \"', ['CN','US','DE','FR','BR','JP'][1 + i % 6], '\", \"platform\": \"', "
       "['ios','android','web'][1 + intDiv(i, 7) % 3], '\"}') "
       f"FROM (SELECT number + 1 AS i FROM numbers({units}))")
    for lo in range(0, events, CHUNK):
        n = min(CHUNK, events - lo)
        ex('INSERT INTO "analysis_event" (event_id, unit_id, event, value, "timestamp", received_at) '
           f"SELECT concat('e-', toString(g)), concat('u-', toString(1 + cityHash64(g) % {units})), "
           "['purchase','page_view','page_view','add_to_cart','checkout','refund'][1 + cityHash64(g + 7) % 6], "
           "if(g % 3 = 0, round(rand64(g) % 20000 / 100, 2), NULL), "
           "toDateTime64('2026-09-17 00:00:00', 6, 'UTC') + toIntervalMicrosecond(rand64(g + 1) % 4233600000000), "
           "now64(6) "
           f"FROM (SELECT number + {lo + 1} AS g FROM numbers({n}))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--events-per-unit", type=int, default=10)
    parser.add_argument("--database", default="abp_bench_ch10", help="where the experiment is defined")
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = f"{PG_SERVER}/{args.database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from analysis import clickhouse, dialects, queries
    from experiments.models import Experiment

    experiment = Experiment.objects.get()
    units = args.events // args.events_per_unit
    with tempfile.TemporaryDirectory() as tmp:
        settings.ANALYTICS_BACKEND, settings.CLICKHOUSE_URL = "clickhouse", f"chdb://{tmp}/ch"
        call_command("clickhouse_init", verbosity=0)
        engine = clickhouse.client_engine(clickhouse.client())
        _, load_s = timed(lambda: generate(engine, experiment, args.events, units))
        (parts,) = engine.execute(engine.dialect, "SELECT count(), sum(bytes_on_disk) FROM system.parts "
                                  "WHERE active AND table = 'analysis_event'", [])
        print(f"{args.events:,} events, {units:,} units generated in ClickHouse in {load_s:.1f} s "
              f"({parts[0]} parts, {parts[1] / 2**30:.2f} GiB on disk); RSS {rss_mb():,.0f} MB", flush=True)
        with dialects.using(engine):
            _, first, raw = best_of_two(lambda: queries.metric_statistics(experiment))
            print(f"  as inserted: metric_statistics {raw:.2f} s (first {first:.2f}); peak RSS {rss_mb():,.0f} MB",
                  flush=True)
            _, optimize_s = timed(lambda: engine.execute(engine.dialect, 'OPTIMIZE TABLE "analysis_event" FINAL', []))
            _, first, merged = best_of_two(lambda: queries.metric_statistics(experiment))
            _, _, seg = best_of_two(lambda: queries.segment_statistics(experiment, "country"))
        print(f"  after OPTIMIZE FINAL ({optimize_s:.1f} s): metric_statistics {merged:.2f} s (first {first:.2f}), "
              f"segment_statistics {seg:.2f} s; peak RSS {rss_mb():,.0f} MB; load average {os.getloadavg()[0]:.1f}")
        clickhouse.client().close()
        clickhouse._client.cache_clear()


if __name__ == "__main__":
    main()
