"""Faults with real services, started and killed by the tests themselves: nothing is lost.

* Redis killed (SIGKILL) under the assignment API: answers keep coming from the in-process
  configuration, the API says ``degraded``, and every exposure still reaches the database --
  those queued before the crash too, Redis running with its append-only file as production
  should.
* PostgreSQL crashed (``pg_ctl stop -m immediate``) during event ingestion: clients get 503 with
  ``Retry-After`` and retry; after recovery no event is missing and none is stored twice, and the
  assignment API answered throughout.

The shared servers on 5432/6379 are never touched: each test runs its own throwaway instance.
(A Celery worker killed during a report is covered in tests/integration/.)
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter

import pytest

from .procs import (
    Gunicorn,
    PostgresCluster,
    RedisServer,
    django_env,
    manage,
    require_binaries,
    seed,
)

# --- Redis --------------------------------------------------------------------------------------


@pytest.fixture
def own_redis(settings):
    """A private redis-server as the cache, the broker URL and the exposure queue."""
    require_binaries("redis-server")
    from assignment import exposures, runtime

    server = RedisServer(persist=True)
    server.start()
    settings.REDIS_URL = server.url
    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url,
        "KEY_PREFIX": "faults", "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }}
    settings.ASSIGNMENT_REDIS_PREFIX = f"{{faults-{uuid.uuid4().hex[:8]}}}"
    settings.ASSIGNMENT_REDIS_RETRY_SECONDS = 0.2
    settings.ASSIGNMENT_EXPOSURE_BUFFER_SIZE = 100_000  # keep the outage's exposures in the buffer
    settings.ASSIGNMENT_EXPOSURE_BUFFER_SECONDS = 3600
    runtime.reset()
    exposures.local_buffer.take()
    exposures._redis_down_until = 0.0
    yield server
    server.__exit__(None, None, None)
    runtime.reset()
    exposures.local_buffer.take()
    exposures._redis_down_until = 0.0
    exposures._clients.clear()


def _queued(exposures, queue: str) -> int:
    """Exposures in the Redis queue (an element holds a batch, or one item if queued before)."""
    return sum(len(exposures._decode_message(m)[0]) for m in exposures.redis_client().lrange(queue, 0, -1))


@pytest.mark.redis
@pytest.mark.django_db
def test_redis_killed_assignment_keeps_answering_and_loses_no_exposure(own_redis, api_key):
    from rest_framework.test import APIClient

    from assignment import exposures, services
    from assignment.evaluator import Evaluator
    from assignment.models import Exposure
    from experiments import services as definitions
    from experiments.models import Metric

    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    definitions.start_experiment(definitions.create_experiment({
        "key": "redis-fault", "name": "r", "traffic_allocation": 100, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "green", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    }))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key('client')}")

    def assign(unit):
        return client.post("/api/v1/assignments", {"unit_id": unit, "experiments": ["redis-fault"]}, format="json")

    before = [assign(f"before-{i}") for i in range(20)]
    assert {r.status_code for r in before} == {200} and not any("degraded" in r.json() for r in before)
    reference = Evaluator.from_json(client.get("/api/v1/config").content)
    exposures.drain_outbox()  # the per-process batch (50 ms) goes out now rather than soon
    queue = exposures._keys()[0]
    assert _queued(exposures, queue) == 20  # queued in Redis, as in production

    own_redis.stop()  # SIGKILL, like a crash
    during, answers = [], {}
    deadline = time.monotonic() + 10
    # At least 60 answers, and on until one says it degraded: exposures are batched for 50 ms
    # per process, so the first answers of an outage cannot know yet.
    while len(during) < 60 or (not any("degraded" in r.json() for r in during) and time.monotonic() < deadline):
        unit = f"during-{len(during)}"
        r = assign(unit)
        during.append(r)
        answers[unit] = r.json()["assignments"][0]
        if len(during) >= 60:
            time.sleep(0.01)
    assert {r.status_code for r in during} == {200}
    for unit, answer in answers.items():  # the in-process configuration answers, unchanged
        assert answer == reference.evaluate("redis-fault", unit).as_dict()
        assert answer["in_experiment"]
    degraded = [r for r in during if "degraded" in r.json()]
    assert degraded, "the API never said that exposures are buffered in process"
    assert all(r.json()["degraded"] == ["exposures-local-buffer"] and r["X-Degraded"] == "exposures-local-buffer"
               for r in degraded)
    assert client.get("/api/v1/config").status_code == 200  # the SDK document too
    services.flush_exposures()  # the periodic flush during the outage writes the buffer through
    assert Exposure.objects.filter(unit_id__startswith="during-").count() == len(answers)

    own_redis.start()  # back, with the queue it had (append-only file)
    time.sleep(0.3)  # past ASSIGNMENT_REDIS_RETRY_SECONDS
    assert _queued(exposures, queue) == 20
    after = [assign(f"after-{i}") for i in range(10)]
    assert {r.status_code for r in after} == {200} and not any("degraded" in r.json() for r in after)
    services.flush_exposures()

    stored = dict(Exposure.objects.values_list("unit_id", "variant__key"))
    expected = {unit: r.json()["assignments"][0]["variant"] for unit, r in zip(
        [f"before-{i}" for i in range(20)] + [f"after-{i}" for i in range(10)], before + after, strict=True)}
    expected.update({unit: answer["variant"] for unit, answer in answers.items()})
    assert stored == expected  # one exposure per answer: before, during and after the outage
    assert exposures.redis_client().llen(queue) == 0 and len(exposures.local_buffer) == 0


# --- PostgreSQL ------------------------------------------------------------------------------------

class Sender:
    """An API client that retries each batch until it is acknowledged, like an SDK would."""

    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base, key
        self.statuses: Counter[int] = Counter()
        self.acknowledged: set[str] = set()
        self.accepted = 0
        self.duplicates = 0
        self.retries = 0

    def _post(self, path: str, body: dict) -> tuple[int, dict, dict]:
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Api-Key {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}"), dict(error.headers)

    def send_batch(self, ids: list[str]) -> None:
        body = {"events": [{"event_id": i, "unit_id": f"unit-{i}", "event": "purchase", "value": 1.5} for i in ids]}
        while True:
            try:
                status, reply, headers = self._post("/api/v1/events", body)
            except OSError:  # connection reset while the worker was busy failing: retry
                status, reply, headers = 0, {}, {}
            self.statuses[status] += 1
            if status == 202:
                assert reply["rejected"] == []
                assert reply["accepted"] + reply["duplicates"] == len(ids)
                self.accepted += reply["accepted"]
                self.duplicates += reply["duplicates"]
                self.acknowledged.update(ids)
                return
            assert status in (0, 503), (status, reply)
            if status == 503:
                assert int(headers.get("Retry-After", "0")) >= 1 and "detail" in reply
            self.retries += 1
            time.sleep(0.05)

    def assign(self, unit: str) -> tuple[int, dict]:
        status, reply, _ = self._post("/api/v1/assignments", {"unit_id": unit, "experiments": ["pg-fault"]})
        self.statuses[status] += 1
        return status, reply


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_crash_during_ingestion_loses_and_doubles_nothing():
    require_binaries("initdb", "pg_ctl")
    with PostgresCluster() as pg:
        pg.create_database("faults")
        env = django_env(DATABASE_URL=pg.url("faults"), CONN_MAX_AGE="60")
        manage(env, "migrate", "--noinput")
        keys = seed(env, experiments=("pg-fault",))
        with Gunicorn(env, workers=1, threads=4) as web:
            sender = Sender(web.url, keys["client"])
            enrolled: dict[str, str] = {}

            def assign_some(prefix: str, n: int) -> None:
                for i in range(n):
                    status, reply = sender.assign(f"{prefix}-{i}")
                    assert status == 200, (status, reply)
                    answer = reply["assignments"][0]
                    if answer["in_experiment"]:
                        enrolled[f"{prefix}-{i}"] = answer["variant"]

            assign_some("warm", 10)  # the worker's configuration and key cache are now warm
            batches: list[list[str]] = []
            done = threading.Event()

            def stream() -> None:
                """A client streaming batches of 50 while the database crashes and comes back."""
                while not done.is_set():
                    batch = [f"ev-{len(batches)}-{i}" for i in range(50)]
                    batches.append(batch)
                    sender.send_batch(batch)

            streamer = threading.Thread(target=stream)
            streamer.start()
            time.sleep(0.5)
            pg.stop("immediate")
            outage_started = time.monotonic()
            assign_some("outage", 30)  # the assignment API does not need the database
            while time.monotonic() - outage_started < 2.0:
                time.sleep(0.1)
            pg.start()
            time.sleep(1.0)
            done.set()
            streamer.join(timeout=120)
            assert not streamer.is_alive(), "the client never got its batches acknowledged"
            for batch in batches[:5]:  # a client that retries after losing the answers
                sender.send_batch(batch)
            assign_some("recovered", 10)
            output = web.output()
        # gunicorn stopped gracefully: the worker wrote its buffered exposures at exit (they
        # would otherwise go with the next answer once ASSIGNMENT_EXPOSURE_BUFFER_SECONDS passed).

        import psycopg

        with psycopg.connect(pg.url("faults")) as conn:
            total, distinct = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM analysis_event").fetchone()
            stored = {row[0] for row in conn.execute("SELECT event_id FROM analysis_event")}
            exposures = dict(conn.execute(
                "SELECT e.unit_id, v.key FROM assignment_exposure e JOIN experiments_variant v ON v.id = e.variant_id"
            ).fetchall())

    sent = {i for batch in batches for i in batch}
    assert sender.statuses[503] > 0, "the outage was not hit: the test proved nothing"
    assert sender.statuses[500] == 0, output[-3000:]
    assert stored == sent == sender.acknowledged  # nothing missing
    assert total == distinct == len(sent)  # nothing twice
    assert sender.accepted == len(sent)  # every event acknowledged as accepted exactly once
    assert sender.duplicates >= 250  # the replayed batches were recognised, not stored again
    # Exposures of answers given during the outage were kept in memory and written afterwards.
    assert enrolled == exposures
    print(f"\nfaults: PostgreSQL crash: {len(sent)} events, {sender.retries} retries, "
          f"statuses {dict(sender.statuses)}, 0 lost, 0 doubled; "
          f"{len([u for u in enrolled if u.startswith('outage')])} exposures from the outage kept")


# --- embedded mode: SIGTERM -------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_in_embedded_mode_keeps_every_acknowledged_exposure(tmp_path):
    """``dev.py serve`` (runserver, SQLite, in-process buffer): 50 answers, then SIGTERM -> 50 rows.

    atexit does not run on a signal; the SIGTERM handler writes the buffer, then the process
    still dies of SIGTERM.
    """
    import signal
    import sqlite3
    import subprocess

    from .procs import PYTHON, ROOT, free_port, wait_for_port

    database = tmp_path / "db.sqlite3"
    env = django_env(DATABASE_URL=f"sqlite:///{database}")
    manage(env, "migrate", "--noinput")
    keys = seed(env, experiments=("sigterm",))
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout=60)
        enrolled = 0
        for i in range(50):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/assignments", method="POST",
                data=json.dumps({"unit_id": f"unit-{i}", "experiments": ["sigterm"]}).encode(),
                headers={"Authorization": f"Api-Key {keys['client']}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                enrolled += json.loads(response.read())["assignments"][0]["in_experiment"]
        assert enrolled == 50

        def stored() -> int:
            with sqlite3.connect(database) as conn:
                return conn.execute("SELECT count(*) FROM assignment_exposure").fetchone()[0]

        before = stored()
        assert before < 50, "the buffer was written before the signal: the test proves nothing"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == -signal.SIGTERM  # still dies of the signal
        assert stored() == 50, log.read_text()[-3000:]
        print(f"\nfaults: SIGTERM in embedded mode: {before} rows before the signal, 50 after")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
