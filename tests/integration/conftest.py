"""Real parts: PostgreSQL, Redis and ``celery worker`` processes started by the test.

The worker runs against the *test* database pytest-django created (its name comes from the live
connection) and the test's Redis. Tests use ``transactional_db`` so the worker sees committed
rows. The test process itself runs with ``CELERY_TASK_ALWAYS_EAGER=true`` in the PostgreSQL pass,
so ``production_mode`` switches its Celery app to sending tasks through the broker.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import CI

ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).parent / "celery"
START_TIMEOUT = 40.0


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(interval)


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    auth = quote(s.get("USER") or "", safe="")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"], safe="")
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{s['NAME']}"


class Worker:
    """One ``celery worker`` subprocess (its own process group) with its log in a file."""

    def __init__(self, log_dir: Path, *, pool: str = "solo", concurrency: int = 1, **env: str) -> None:
        from django.conf import settings

        self.name = f"test-{uuid.uuid4().hex[:8]}"
        self.log_path = log_dir / f"{self.name}.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": _database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.env.pop("CELERY_BROKER_URL", None)
        self.env.pop("CELERY_RESULT_BACKEND", None)
        self.args = [
            str(CELERY), "-A", "config", "worker", f"--pool={pool}", f"--concurrency={concurrency}",
            "-Q", "celery", "--loglevel", "INFO", "-n", f"{self.name}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        wait_for(lambda: self.proc.poll() is not None or " ready." in self.log(),
                 timeout=START_TIMEOUT, what=f"worker {self.name} to start")
        if self.proc.poll() is not None:
            pytest.fail(f"worker {self.name} exited at start:\n{self.log()[-3000:]}", pytrace=False)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL the worker's process group (the worker and any pool children): no cleanup at all."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def production_mode():
    """The test process sends tasks to the broker instead of running them in process."""
    from django.conf import settings

    from config.celery import app

    if not settings.REDIS_URL:
        message = "needs REDIS_URL (the PostgreSQL pass sets it)"
        if CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    old = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield app
    app.conf.task_always_eager = old


@pytest.fixture
def workers(transactional_db, production_mode, tmp_path):
    """``workers(**options)`` starts a worker; every worker started is killed at the end."""
    started: list[Worker] = []

    def start(**options) -> Worker:
        worker = Worker(tmp_path, **options)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.kill()
