"""The per-key rate limit: 429 with Retry-After, configurable, and shared by every process.

The counter lives in the shared cache (Redis in production), so N web processes together allow
the limit once, not N times. Shown twice: two plain processes calling the throttle against
Redis, and a 2-worker gunicorn taking concurrent traffic (whose access log proves both workers
served) -- with, as the control that shows the test can fail, the same gunicorn on a
per-process cache letting through more than the limit.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .procs import ROOT, Gunicorn, django_env

# --- in process: configuration ---------------------------------------------------------------------


@pytest.fixture
def rate(db):
    from rest_framework.settings import api_settings

    saved = dict(api_settings.DEFAULT_THROTTLE_RATES)

    def set_rate(value: str) -> None:
        api_settings.DEFAULT_THROTTLE_RATES["api_key"] = value

    yield set_rate
    api_settings.DEFAULT_THROTTLE_RATES.clear()
    api_settings.DEFAULT_THROTTLE_RATES.update(saved)


def _hammer(client, n: int) -> list:
    return [client.post("/api/v1/assignments", {"unit_id": f"u-{i}"}, format="json") for i in range(n)]


def test_limit_gives_429_with_retry_after_then_recovers(rate, api_client_for, monkeypatch):
    from access import throttling

    rate("5/s")
    client = api_client_for("client")
    clock = [1000.2]
    monkeypatch.setattr(throttling.time, "time", lambda: clock[0])
    responses = _hammer(client, 7)
    assert [r.status_code for r in responses] == [200] * 5 + [429] * 2
    assert responses[-1]["Retry-After"] == "1" and "throttled" in responses[-1].json()["detail"].lower()
    clock[0] = 1001.0  # the next one-second window
    assert _hammer(client, 1)[0].status_code == 200


def test_retry_after_is_the_rest_of_the_window(rate, api_client_for, monkeypatch):
    from access import throttling

    rate("2/min")
    monkeypatch.setattr(throttling.time, "time", lambda: 60 * 1000 + 15.5)
    responses = _hammer(api_client_for("client"), 3)
    assert responses[-1].status_code == 429 and responses[-1]["Retry-After"] == "45"


def test_each_key_has_its_own_budget(rate, api_client_for):
    rate("3/h")
    first, second = api_client_for("client"), api_client_for("client")
    assert [r.status_code for r in _hammer(first, 4)] == [200, 200, 200, 429]
    assert [r.status_code for r in _hammer(second, 3)] == [200, 200, 200]


def test_the_limit_can_be_switched_off(rate, api_client_for, settings):
    rate("2/h")
    settings.API_RATE_LIMIT_ENABLED = False
    assert {r.status_code for r in _hammer(api_client_for("client"), 5)} == {200}


def test_the_limit_comes_from_the_environment():
    code = "import config.settings as s; print(s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['api_key'], s.API_RATE_LIMIT_ENABLED)"
    env = django_env(API_RATE_LIMIT="120/s", API_RATE_LIMIT_ENABLED="false")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["120/s", "False"]


@pytest.mark.parametrize("value", ["abc", "10/", "/min", "0/min", "-5/s", "ten/min", "10/fortnight"])
def test_a_malformed_limit_is_a_system_check_error(rate, value):
    from access.checks import rate_limit_is_valid

    rate(value)
    assert [e.id for e in rate_limit_is_valid(None)] == ["access.E001"]
    rate("6000/min")
    assert rate_limit_is_valid(None) == []


def test_a_malformed_limit_stops_manage_py(rate):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    rate("abc")
    with pytest.raises(SystemCheckError, match="access.E001"):
        call_command("check")


def test_cache_outage_fails_open(rate, api_client_for, monkeypatch):
    """Without the shared cache the limit cannot be counted: traffic flows (documented)."""
    from django.core.cache import cache

    rate("1/h")

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    client = api_client_for("client")
    monkeypatch.setattr(cache, "incr", down)
    monkeypatch.setattr(cache, "add", down)
    assert {r.status_code for r in _hammer(client, 3)} == {200}


# --- across processes ------------------------------------------------------------------------------

THROTTLE_SCRIPT = textwrap.dedent("""
    import sys
    from django.conf import settings
    # Only what the throttle reads (a full django.setup() costs seconds per process).
    settings.configure(
        CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                            "LOCATION": sys.argv[3], "KEY_PREFIX": sys.argv[4]}},
        REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {"api_key": "50/h"}},
    )
    from types import SimpleNamespace
    from access.throttling import APIKeyRateThrottle
    user = SimpleNamespace(key=SimpleNamespace(prefix=sys.argv[1]))
    request = SimpleNamespace(user=user)
    allowed = sum(APIKeyRateThrottle().allow_request(request, None) for _ in range(int(sys.argv[2])))
    print(allowed)
""")


@pytest.mark.redis
def test_two_processes_share_one_budget_in_redis():
    from tests.conftest import TEST_REDIS_URL

    prefix = f"rl-{uuid.uuid4().hex[:8]}"
    _wait_for_a_fresh_window(3600)
    procs = [subprocess.Popen([sys.executable, "-c", THROTTLE_SCRIPT, "sharedkey", "40", TEST_REDIS_URL, prefix],
                              cwd=ROOT, env=django_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    allowed = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        allowed.append(int(out.strip().splitlines()[-1]))
    assert sum(allowed) == 50, allowed  # 80 attempts, one budget of 50 between the two processes
    assert all(a > 0 for a in allowed)


def _wait_for_a_fresh_window(period: int, margin: float = 20.0) -> None:
    """Fixed windows: never start a counting test in the window's last seconds."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.1)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_two_gunicorn_workers_share_one_budget(transactional_db, tmp_path):
    from django.db import connection

    from access.services import create_api_key
    from tests.conftest import TEST_REDIS_URL

    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    _, shared_key = create_api_key("rate-shared", "client")
    _, local_key = create_api_key("rate-local", "client")
    limit, attempts = 60, 160

    def run(key: str, **env_extra: str) -> tuple[Counter, set[str]]:
        access_log = tmp_path / f"access-{uuid.uuid4().hex[:6]}.log"
        env = django_env(DATABASE_URL=database_url, API_RATE_LIMIT=f"{limit}/h", **env_extra)
        with Gunicorn(env, workers=2, access_log=access_log) as web:
            web.wait_for_workers()  # both workers up before the burst
            served_before = len(access_log.read_text().splitlines())
            _wait_for_a_fresh_window(3600)
            statuses = Counter(_burst(web.url, key, attempts))
        lines = access_log.read_text().splitlines()[served_before:]
        pids = {line.split()[0] for line in lines if line.strip()}
        return statuses, pids

    shared, pids = run(shared_key, REDIS_URL=TEST_REDIS_URL, CACHE_KEY_PREFIX=f"rl-{uuid.uuid4().hex[:8]}",
                       CELERY_TASK_ALWAYS_EAGER="true")
    assert len(pids) == 2, "both workers must have served requests"
    assert shared == {200: limit, 429: attempts - limit}, shared

    # Control: a per-process cache (no REDIS_URL) lets each worker count alone, so more pass.
    alone, pids = run(local_key)
    assert len(pids) == 2 and alone[200] > limit, alone
    print(f"\nrate limit: 2 workers, {attempts} requests, limit {limit}/h -> shared Redis {dict(shared)}, "
          f"per-process cache {dict(alone)}")


def _burst(base: str, key: str, n: int) -> list[int]:
    import json
    import urllib.error
    import urllib.request

    def one(i: int) -> int:
        request = urllib.request.Request(
            base + "/api/v1/assignments", data=json.dumps({"unit_id": f"u-{i}"}).encode(), method="POST",
            headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            if e.code == 429:
                assert int(e.headers["Retry-After"]) >= 1
            return e.code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(n)))


def test_rate_limit_docs_match_settings():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    assert "API_RATE_LIMIT" in doc and "API_RATE_LIMIT_ENABLED" in doc and "Retry-After" in doc
