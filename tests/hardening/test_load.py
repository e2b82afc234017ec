"""A bounded load test in CI: gunicorn on PostgreSQL + Redis, wrk sending assignments and event
batches together for ~12 s. Zero errors, and the events stored equal the events acknowledged.

The 60-second version with figures is ``bench/load_test.py``; both use tests/hardening/loadgen.py.
"""
from __future__ import annotations

import os
import uuid

import pytest

from .loadgen import retry_tail, run_wrk, stored_events
from .procs import Gunicorn, RedisServer, django_env, require_binaries

SECONDS = float(os.environ.get("LOAD_TEST_SECONDS", "12"))


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_assignments_and_events_under_load(transactional_db):
    paths = require_binaries("wrk", "redis-server")
    from django.db import connection

    from access.services import create_api_key
    from experiments import services
    from experiments.models import Metric

    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    for key in ("load-a", "load-b"):
        services.start_experiment(services.create_experiment({
            "key": key, "name": key, "traffic_allocation": 100, "planned_sample_size": 10000,
            "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "green", "weight": 50}],
            "metrics": [{"metric": "purchase", "role": "primary"}],
            "targeting": [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}],
        }))
    _, key = create_api_key("load", "client")

    with RedisServer() as redis:
        env = django_env(DATABASE_URL=database_url, REDIS_URL=redis.url, CELERY_TASK_ALWAYS_EAGER="true",
                         API_RATE_LIMIT="100000000/min", CACHE_KEY_PREFIX=f"load-{uuid.uuid4().hex[:6]}")
        with Gunicorn(env, workers=2) as web:
            result = run_wrk(web.url, key, seconds=SECONDS, threads=2, connections=8, batch=20, wrk=paths["wrk"])
            retry_tail(result, web.url, key)
            output = web.output()

    rows, distinct = stored_events(database_url, result.run)
    print(f"\nload: {result.summary()}; {rows} events stored")
    assert result.error_count == 0, (result.errors, result.statuses, output[-3000:])
    assert result.statuses.get(200, 0) > 0 and result.statuses.get(202, 0) > 0
    assert rows == distinct  # no event twice
    assert rows == result.accepted  # stored == acknowledged ("accepted" summed over the answers)
    assert rows == result.event_ids  # nothing missing
    assert result.duplicates == result.retried_batches * result.batch  # re-sent: all duplicates
