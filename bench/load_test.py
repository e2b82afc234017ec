"""Load test on loopback: gunicorn in production mode (PostgreSQL + Redis) under wrk, sending
assignments and event batches together. Prints figures; exits non-zero on any error or if the
events stored differ from the events acknowledged.

    .venv/bin/python bench/load_test.py [--seconds 60] [--workers N] [--connections 32] [--batch 20]
                                        [--postgres postgres://postgres@127.0.0.1:5432/postgres]
                                        [--throwaway-postgres]

Starts everything itself and removes it afterwards: a fresh bench database (``abp_bench_load``
on the PostgreSQL server given by ``--postgres``, or a throwaway cluster on a free port with
``--throwaway-postgres``), a private redis-server on a free port, gunicorn with ``--workers``
sync workers (default 2 per CPU). The rate limit stays on, set far above the offered load, so its
Redis counter is part of what is measured. Needs ``wrk`` (``apt-get install wrk``).

The counting and the wrk script live in tests/hardening/loadgen.py, shared with the bounded CI
version (tests/hardening/test_load.py).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hardening.loadgen import retry_tail, run_wrk, stored_events  # noqa: E402
from tests.hardening.procs import (  # noqa: E402
    Gunicorn,
    PostgresCluster,
    RedisServer,
    django_env,
    find_binary,
    manage,
    seed,
)

BENCH_DB = "abp_bench_load"


@contextlib.contextmanager
def bench_database(server_url: str | None):
    """A fresh database: on ``server_url``'s server (dropped afterwards), or in a throwaway cluster."""
    import psycopg

    if server_url is None:
        with PostgresCluster() as cluster:
            cluster.create_database(BENCH_DB)
            yield cluster.url(BENCH_DB)
        return
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    try:
        yield urlunparse(urlparse(server_url)._replace(path=f"/{BENCH_DB}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--batch", type=int, default=20, help="events per POST /api/v1/events")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--throwaway-postgres", action="store_true", help="start a private PostgreSQL cluster")
    args = parser.parse_args()
    wrk = find_binary("wrk")
    if wrk is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    with bench_database(None if args.throwaway_postgres else args.postgres) as database_url, RedisServer() as redis:
        env = django_env(DATABASE_URL=database_url, REDIS_URL=redis.url, API_RATE_LIMIT="1000000000/min")
        print(f"bench: migrating {urlparse(database_url).path[1:]} ...", flush=True)
        manage(env, "migrate", "--noinput")
        keys = seed(env, experiments=("load-a", "load-b"))
        with Gunicorn(env, workers=args.workers) as web:
            print(f"bench: gunicorn {args.workers} workers at {web.url}; wrk {args.threads} threads, "
                  f"{args.connections} connections, {args.seconds} s", flush=True)
            started = time.monotonic()
            result = run_wrk(web.url, keys["client"], seconds=args.seconds, threads=args.threads,
                             connections=args.connections, batch=args.batch, wrk=wrk)
            retry_tail(result, web.url, keys["client"])
            elapsed = time.monotonic() - started
            server_log = web.output()
        rows, distinct = stored_events(database_url, result.run)

    assignments = result.statuses.get(200, 0)
    batches = result.statuses.get(202, 0)
    print()
    print(f"requests          {result.requests} in {result.seconds:.1f} s = {result.rate:.0f} req/s "
          f"({assignments} assignments, {batches} event batches of {args.batch})")
    print(f"latency           p50 {result.latency_ms['p50']:.1f} ms, p99 {result.latency_ms['p99']:.1f} ms, "
          f"max {result.latency_ms['max']:.1f} ms")
    print(f"errors            {result.error_count} (socket {result.errors}, statuses {dict(sorted(result.statuses.items()))})")
    print(f"events            {result.event_ids} ids sent, {result.accepted} acknowledged as accepted, "
          f"{rows} stored ({distinct} distinct); {result.retried_batches} batches re-sent -> "
          f"{result.duplicates} duplicates")
    print(f"events/s stored   {rows / result.seconds:.0f}")
    print(f"wall time         {elapsed:.1f} s")
    ok = result.error_count == 0 and rows == distinct == result.accepted == result.event_ids
    print("RESULT", "OK" if ok else "FAILED")
    if not ok:
        print(server_log[-3000:])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
