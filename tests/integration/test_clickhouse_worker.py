"""The ClickHouse loader as a real Celery task: a ``celery worker`` process (ClickHouse through
``chdb://<directory>`` inside the worker) drains the Redis Stream the endpoint fills, and a
worker killed (SIGKILL) before it ran leaves the entries for the next one: nothing is lost."""
from __future__ import annotations

import uuid

import pytest

from analysis import clickhouse, stream, tasks
from tests.analysis.test_dialects import _importable
from tests.analysis.test_queries import T0

from .conftest import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery,
              pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not _importable("chdb"), reason="chdb is not installed (clickhouse extra)")]


def test_the_worker_loads_the_stream_into_clickhouse(workers, settings, tmp_path):
    key = f"test:chstream:{uuid.uuid4().hex}"
    url = f"chdb://{tmp_path}/ch"
    env = {"ANALYTICS_BACKEND": "clickhouse", "CLICKHOUSE_URL": url, "CLICKHOUSE_STREAM_KEY": key,
           "CLICKHOUSE_LOADER_CLAIM_SECONDS": "0"}
    settings.ANALYTICS_BACKEND, settings.CLICKHOUSE_URL, settings.CLICKHOUSE_STREAM_KEY = "clickhouse", url, key
    client = clickhouse.ChdbClient(f"{tmp_path}/ch")  # clickhouse_init, before the worker owns it
    for sql in clickhouse.ddl():
        client.command(sql)
    client.close()
    try:
        for b in range(5):
            stream.append_events([(f"w{b}-{i}", f"u{i}", "purchase", 1.0, T0, "{}") for i in range(200)],
                                 received_at=T0)
        tasks.load_clickhouse.delay()  # no worker yet: the message waits in the broker
        first = workers(pool="solo", **env)
        first.kill()  # killed before (or while) it ran: acks_late + pending entries keep everything
        second = workers(pool="solo", **env)
        # the task runs once the worker is up; ClickHouse (its process) is checked after it stops
        tasks.load_clickhouse.delay()
        wait_for(lambda: stream.pending() == 0 or "Traceback" in second.log(), timeout=60,
                 what="the worker to drain the stream")
        assert stream.pending() == 0, second.log()[-3000:]
        second.kill()
        client = clickhouse.ChdbClient(f"{tmp_path}/ch")
        try:
            (row,) = client.query('SELECT count(), uniqExact(event_id) FROM "analysis_event" FINAL').result_rows
        finally:
            client.close()
        assert row == (1000, 1000)
    finally:
        stream.redis_client().delete(key)
        clickhouse._client.cache_clear()
