"""Event ingestion throughput: POST /api/v1/events through gunicorn vs raw bulk inserts.

Creates a throw-away PostgreSQL database (``abp_bench`` by default), migrates it, serves the app
with gunicorn on 127.0.0.1 and sends pre-built batches of 1,000 events from concurrent client
threads (http.client). Then, in the same run and into the same table (emptied back to its
prefill), inserts the same events without HTTP: psycopg ``COPY`` per batch over 1 and over
``--clients`` connections, and the endpoint's own statement (``INSERT ... SELECT FROM
unnest(...) ON CONFLICT DO NOTHING``) per batch. Prints events/s for each and the HTTP / raw
ratios. Everything runs on this machine (server, database, clients). ``--prefill N`` first puts
N older events in the table, to show how inserts slow down as the table and its indexes grow.

    .venv/bin/python bench/bench_ingestion.py [--events 300000] [--workers 4] [--clients 8]
        [--prefill 10000000] [--ordered-ids]

Needs PostgreSQL at postgres://postgres@127.0.0.1:5432 and Redis at redis://127.0.0.1:6379/14.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
EVENT_NAMES = ["purchase", "page_view", "add_to_cart", "checkout", "signup"]

SETUP = r"""
import django, json
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from access.services import create_api_key
_, raw = create_api_key("bench-ingestion", "client")
print(json.dumps({"key": raw}))
"""


def create_database(name: str) -> str:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_SERVER}/{name}"


def make_batches(total: int, size: int, seed: int = 7, ordered: bool = False) -> list[list[dict]]:
    """Batches of events; ``ordered`` ids start with the time (like UUIDv7 or ULID) instead of
    being random (UUIDv4), so the unique index grows at its right edge only."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    base_ms = int(now.timestamp() * 1000)
    batches = []
    for b in range(0, total, size):
        batch = []
        for i in range(min(size, total - b)):
            name = rng.choice(EVENT_NAMES)
            if ordered:
                event_id = f"{base_ms + b + i:012x}-{rng.getrandbits(80):020x}"
            else:
                event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            event = {
                "event_id": event_id,
                "unit_id": f"u-{rng.randrange(200_000)}",
                "event": name,
                "timestamp": (now - timedelta(seconds=rng.randrange(30 * 86400))).isoformat(),
            }
            if name in ("purchase", "checkout"):
                event["value"] = round(rng.uniform(1, 200), 2)
                event["properties"] = {"currency": "EUR", "platform": rng.choice(["ios", "android", "web"])}
            batch.append(event)
        batches.append(batch)
    return batches


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not come up")


def post(port: int, key: str, body: bytes) -> tuple[int, dict, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/api/v1/events", body=body,
                 headers={"Content-Type": "application/json", "Authorization": f"Api-Key {key}"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data), time.perf_counter() - started


def run_http(port: int, key: str, bodies: list[bytes], clients: int) -> dict:
    jobs: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        jobs.put(body)
    latencies: list[float] = []
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0, "errors": 0}
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                body = jobs.get_nowait()
            except queue.Empty:
                return
            status, answer, seconds = post(port, key, body)
            with lock:
                latencies.append(seconds)
                if status != 202:
                    totals["errors"] += 1
                    continue
                totals["accepted"] += answer["accepted"]
                totals["duplicates"] += answer["duplicates"]
                totals["rejected"] += len(answer["rejected"])

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {**totals, "seconds": elapsed, "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


def rows_of(batch: list[dict], received: datetime) -> list[tuple]:
    return [
        (e["event_id"], e["unit_id"], e["event"], e.get("value"), datetime.fromisoformat(e["timestamp"]),
         json.dumps(e.get("properties") or {}, separators=(",", ":")), received)
        for e in batch
    ]


COLUMNS = 'event_id, unit_id, event, value, "timestamp", properties, received_at'
UNNEST_SQL = (
    f"INSERT INTO analysis_event ({COLUMNS}) "
    "SELECT i, u, n, v, t, p::jsonb, %b FROM unnest(%b::text[], %b::text[], %b::text[], "
    "%b::float8[], %b::timestamptz[], %b::text[]) AS r(i, u, n, v, t, p) ON CONFLICT (event_id) DO NOTHING"
)


def _copy(conn, rows: list[tuple]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY analysis_event ({COLUMNS}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _unnest(conn, rows: list[tuple]) -> None:
    columns = [list(c) for c in zip(*[r[:6] for r in rows], strict=True)]
    conn.execute(UNNEST_SQL, [rows[0][6], *columns])


def run_raw(dsn: str, batches: list[list[dict]], write, connections: int) -> float:
    """Seconds to write every batch (one autocommit statement each) over ``connections``
    concurrent connections; rows are converted before the clock starts."""
    received = datetime.now(UTC)
    jobs: queue.Queue[list[tuple]] = queue.Queue()
    for b in batches:
        jobs.put(rows_of(b, received))
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(connections)]

    def worker(conn) -> None:
        while True:
            try:
                rows = jobs.get_nowait()
            except queue.Empty:
                return
            write(conn, rows)

    threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    return elapsed


ORDERED_ID_SQL = "lpad(to_hex(1700000000000 + g), 12, '0') || '-' || substr(md5(g::text), 1, 20)"


def prefill(dsn: str, rows: int, ordered: bool = False) -> float:
    """Put ``rows`` older events in the table first (generated inside PostgreSQL, indexes rebuilt
    after the load): inserts get slower as the indexes outgrow memory."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'analysis_event' "
            "AND indexname IN ('event_unit_name_time', 'event_name_time')"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.execute(
            f"INSERT INTO analysis_event ({COLUMNS}) "
            f"SELECT {ORDERED_ID_SQL if ordered else 'gen_random_uuid()::text'}, 'u-' || (hashint8(g) & 2147483647) %% 200000, "
            "(ARRAY['purchase','page_view','add_to_cart','checkout','signup'])[1 + g %% 5], "
            "CASE WHEN g %% 3 = 0 THEN random() * 200 END, "
            "now() - random() * INTERVAL '90 days', '{}'::jsonb, now() "
            "FROM generate_series(1, %s) AS g",
            [rows],
        )
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM ANALYZE analysis_event")
    return time.perf_counter() - started


def reset_table(dsn: str, keep: int = 0) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if keep:  # drop only what the previous run added (by id), keep the prefill
            conn.execute("DELETE FROM analysis_event WHERE id > %s", [keep])
            conn.execute("VACUUM analysis_event")
        else:
            conn.execute("TRUNCATE analysis_event")
        conn.execute("CHECKPOINT")


def count_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT COUNT(*) FROM analysis_event").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--database", default="abp_bench")
    parser.add_argument("--ordered-ids", action="store_true",
                        help="time-ordered event ids (UUIDv7/ULID-like) instead of random UUIDv4")
    parser.add_argument("--prefill", type=int, default=0,
                        help="events already in the table before the runs (e.g. 10000000)")
    args = parser.parse_args()

    dsn = create_database(args.database)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": REDIS_URL, "CACHE_KEY_PREFIX": prefix,
           "API_RATE_LIMIT_ENABLED": "false", "DEBUG": "false", "CELERY_TASK_ALWAYS_EAGER": "true",
           "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    key = json.loads(subprocess.run([PYTHON, "-c", SETUP], env=env, cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout.strip().splitlines()[-1])["key"]

    keep = 0
    if args.prefill:
        print(f"Prefilling the table with {args.prefill:,} events ...", flush=True)
        seconds = prefill(dsn, args.prefill, args.ordered_ids)
        with psycopg.connect(dsn) as conn:
            keep = conn.execute("SELECT MAX(id) FROM analysis_event").fetchone()[0]
        print(f"  {seconds:.0f} s", flush=True)
    print(f"Building {args.events:,} events in batches of {args.batch:,} ...", flush=True)
    batches = make_batches(args.events, args.batch, ordered=args.ordered_ids)
    bodies = [json.dumps({"events": b}, separators=(",", ":")).encode() for b in batches]
    print(f"  average body {sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB", flush=True)

    port = free_port()
    server = subprocess.Popen(
        [GUNICORN, "config.wsgi:application", "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "--timeout", "120"],
        env=env, cwd=ROOT,
    )
    try:
        wait_port(port)
        warm = json.dumps({"events": []}).encode()
        for _ in range(args.workers * 4):
            post(port, key, warm)
        http_result = run_http(port, key, bodies, args.clients)
    finally:
        server.terminate()
        server.wait(timeout=30)
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for k in client.scan_iter(f"*{prefix}*"):
            client.delete(k)
    stored = count_rows(dsn) - args.prefill

    raw = {}
    for label, write, connections in [
        ("COPY, 1 connection", _copy, 1),
        (f"COPY, {args.clients} connections", _copy, args.clients),
        (f"INSERT ... unnest ON CONFLICT, {args.clients} connections", _unnest, args.clients),
    ]:
        reset_table(dsn, keep)
        raw[label] = args.events / run_raw(dsn, batches, write, connections)
        assert count_rows(dsn) == args.events + args.prefill

    n = args.events
    http_rate = n / http_result["seconds"]
    print(f"\nPostgreSQL ingestion, {n:,} events, batches of {args.batch:,}, into a table of "
          f"{args.prefill:,} events, {os.cpu_count()} CPUs (server, database and clients on this machine)"
          f"{', time-ordered event ids' if args.ordered_ids else ', random UUIDv4 event ids'}")
    print(f"  HTTP  POST /api/v1/events, gunicorn {args.workers} sync workers, {args.clients} client threads: "
          f"{http_rate:>9,.0f} ev/s  (p50 {http_result['p50'] * 1000:.0f} ms, "
          f"p99 {http_result['p99'] * 1000:.0f} ms per batch)")
    print(f"        accepted {http_result['accepted']:,}, duplicates {http_result['duplicates']:,}, "
          f"rejected {http_result['rejected']:,}, non-202 {http_result['errors']}, rows stored {stored:,}")
    for label, rate in raw.items():
        print(f"  raw   {label:<52s} {rate:>9,.0f} ev/s   HTTP/raw = {http_rate / rate:.2f}")
    print(f"  goal >= 20,000 ev/s through HTTP: {'met' if http_rate >= 20_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
