"""Event ingestion with ANALYTICS_BACKEND=clickhouse: HTTP -> Redis Stream -> loader -> ClickHouse.

Serves the app with gunicorn (``ANALYTICS_BACKEND=clickhouse``; a throw-away PostgreSQL database
holds the API key and the tombstones) and sends batches of 1,000 events from client threads,
as ``bench_ingestion.py`` does. ClickHouse is chdb in a separate loader process
(``CLICKHOUSE_URL=chdb://<temporary directory>``), running ``analysis.loader`` in a loop. Three
figures, in events per second:

1. HTTP into the stream alone (loader stopped: what the endpoint sustains while ClickHouse is
   away, up to ``CLICKHOUSE_STREAM_MAX_ENTRIES``);
2. the loader alone, draining what phase 1 left (stream -> INSERT -> XACK/XDEL);
3. end to end: HTTP and the loader at once, from the first request until ClickHouse holds
   every event (``count() FINAL``). The loader waits ``--pause`` seconds after a round that
   found less than ``--rows`` rows, as the beat job does (``CLICKHOUSE_LOAD_SECONDS``), so it
   inserts large batches instead of competing with the web workers for the CPUs.

``--prefill N`` first puts N events in the ClickHouse table (generated inside chdb), to show the
loader's rate does not depend on the table size.

    .venv/bin/python bench/bench_clickhouse_ingestion.py [--events 300000] [--prefill 10000000]

Needs PostgreSQL at postgres://postgres@127.0.0.1:5432, Redis (BENCH_REDIS_URL, default
redis://127.0.0.1:6379/14) and chdb. Server, Redis, loader and clients share this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_ingestion import (  # noqa: E402
    GUNICORN,
    PYTHON,
    REDIS_URL,
    ROOT,
    SETUP,
    create_database,
    free_port,
    make_batches,
    post,
    run_http,
    wait_port,
)

LOADER = r"""
import json, sys, time
import django
django.setup()
from analysis import clickhouse, loader
from django.core.management import call_command
target, prefill = int(sys.argv[1]), int(sys.argv[2])
call_command("clickhouse_init", verbosity=0)
ch = clickhouse.client()
if prefill:
    started = time.perf_counter()
    ch.command(
        "INSERT INTO analysis_event (event_id, unit_id, event, value, timestamp) "
        "SELECT concat('pre-', toString(number)), concat('u-', toString(number % 200000)), "
        "['purchase','page_view','add_to_cart','checkout','signup'][1 + number % 5], "
        "if(number % 3 = 0, (number % 20000) / 100, NULL), "
        f"now64(6) - toIntervalSecond(number % 7776000) FROM numbers({prefill})")
    print(json.dumps({"prefill_seconds": time.perf_counter() - started}), flush=True)
print(json.dumps({"ready": True}), flush=True)
sys.stdin.readline()  # go
started = time.perf_counter()
loaded = rounds = 0
first = None
pause = float(sys.argv[3])
while loaded < target:
    result = loader.load_once()
    if result.events:
        first = first or time.perf_counter()
    loaded += result.events
    rounds += 1
    if result.events + result.exposures < loader._rows_target() and loaded < target:
        time.sleep(pause)  # as the beat job: wait for a full INSERT rather than spin on small ones
elapsed, done_at = time.perf_counter() - started, time.time()
(final,) = ch.query("SELECT count() FROM analysis_event FINAL").result_rows[0]
print(json.dumps({"seconds": elapsed, "done_at": done_at, "busy_seconds": time.perf_counter() - (first or started),
                  "loaded": loaded, "rounds": rounds, "final": final - prefill}), flush=True)
"""


def _message(proc: subprocess.Popen) -> dict:
    """The loader's next JSON line (other output, e.g. clickhouse_init's, is skipped)."""
    while True:
        text = proc.stdout.readline()
        if not text:
            raise RuntimeError("the loader process ended early")
        if text.startswith("{"):
            return json.loads(text)


def start_loader(env: dict, target: int, prefill: int, pause: float) -> subprocess.Popen:
    proc = subprocess.Popen([PYTHON, "-c", LOADER, str(target), str(prefill), str(pause)], env=env, cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    while True:
        line = _message(proc)
        if "prefill_seconds" in line:
            print(f"  prefilled ClickHouse with {prefill:,} events in {line['prefill_seconds']:.1f} s", flush=True)
        if line.get("ready"):
            return proc


def finish_loader(proc: subprocess.Popen) -> dict:
    result = _message(proc)
    proc.wait(timeout=60)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--rows", type=int, default=50_000, help="rows per ClickHouse INSERT")
    parser.add_argument("--prefill", type=int, default=0, help="events already in ClickHouse")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="seconds the loader waits after a round short of --rows (the beat interval)")
    parser.add_argument("--database", default="abp_bench_chi")
    args = parser.parse_args()

    import redis

    dsn = create_database(args.database)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    workdir = tempfile.mkdtemp(prefix="abp-chdb-")
    env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": REDIS_URL, "CACHE_KEY_PREFIX": prefix,
           "API_RATE_LIMIT_ENABLED": "false", "DEBUG": "false", "CELERY_TASK_ALWAYS_EAGER": "true",
           "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "config.settings",
           "ANALYTICS_BACKEND": "clickhouse", "CLICKHOUSE_URL": f"chdb://{workdir}/ch",
           "CLICKHOUSE_STREAM_KEY": f"{prefix}:stream", "CLICKHOUSE_LOAD_ROWS": str(args.rows),
           "CLICKHOUSE_STREAM_MAX_ENTRIES": str(10 * (args.events // args.batch + 1))}
    key = json.loads(subprocess.run([PYTHON, "-c", SETUP], env=env, cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout.strip().splitlines()[-1])["key"]
    r = redis.Redis.from_url(REDIS_URL)
    batches = make_batches(args.events, args.batch)
    bodies = [json.dumps({"events": b}, separators=(",", ":")).encode() for b in batches]
    # Phase 3 sends the same events under new ids (fresh rows, not duplicates).
    batches3 = [[{**e, "event_id": "b-" + e["event_id"]} for e in b] for b in batches]
    bodies3 = [json.dumps({"events": b}, separators=(",", ":")).encode() for b in batches3]

    port = free_port()
    loaders: list[subprocess.Popen] = []
    server = subprocess.Popen(
        [GUNICORN, "config.wsgi:application", "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "--timeout", "120"], env=env, cwd=ROOT)
    try:
        wait_port(port)
        warm = json.dumps({"events": []}).encode()
        for _ in range(args.workers * 4):
            post(port, key, warm)
        loader = start_loader(env, 2 * args.events, args.prefill, args.pause)
        loaders.append(loader)
        # 1. HTTP into the stream, loader idle.
        http1 = run_http(port, key, bodies, args.clients)
        pending = r.xlen(env["CLICKHOUSE_STREAM_KEY"])
        # 2. The loader drains it (then keeps polling for phase 3's events).
        loader.stdin.write("go\n")
        loader.stdin.flush()
        started = time.perf_counter()
        while r.xlen(env["CLICKHOUSE_STREAM_KEY"]):
            time.sleep(0.01)
        drain = time.perf_counter() - started
        # 3. End to end: HTTP while the loader runs, until ClickHouse has everything.
        started = time.time()  # wall clock: the loader process reports when it had every event
        http3 = run_http(port, key, bodies3, args.clients)
        result = finish_loader(loader)
        e2e = result["done_at"] - started
        r_pending_max = pending
    finally:
        server.terminate()
        server.wait(timeout=30)
        for proc in loaders:
            if proc.poll() is None:
                proc.kill()
        r.delete(env["CLICKHOUSE_STREAM_KEY"])
        for k in r.scan_iter(f"*{prefix}*"):
            r.delete(k)
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
        import psycopg

        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')

    n = args.events
    print(f"\nClickHouse ingestion (chdb loader process), {n:,} events per phase, batches of {args.batch:,}, "
          f"{args.rows:,} rows per INSERT (loader pauses {args.pause:g} s after a short round), ClickHouse table prefilled with {args.prefill:,} events, "
          f"{os.cpu_count()} CPUs shared by server, Redis, PostgreSQL, loader and clients")
    print(f"  1. HTTP -> stream (loader stopped), gunicorn {args.workers} workers, {args.clients} clients: "
          f"{n / http1['seconds']:>9,.0f} ev/s (p50 {http1['p50'] * 1000:.0f} ms, p99 {http1['p99'] * 1000:.0f} ms; "
          f"{pending:,} entries waiting; non-202: {http1['errors']})")
    print(f"  2. loader alone, stream -> ClickHouse:                        {n / drain:>9,.0f} ev/s")
    print(f"  3. end to end, HTTP + stream + loader at once:                {n / e2e:>9,.0f} ev/s "
          f"(HTTP side {n / http3['seconds']:,.0f} ev/s; non-202: {http3['errors']})")
    print(f"  ClickHouse holds {result['final']:,} distinct new events (expected {2 * n:,}); "
          f"{result['rounds']} loader rounds; at most {r_pending_max:,} stream entries waited")
    print(f"  goal >= 30,000 ev/s end to end: {'met' if n / e2e >= 30_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
