"""Shared fixtures.

Service-dependent tests (markers ``postgres``, ``redis``, ``celery``) are skipped on a laptop
without the service, but FAIL in CI (``CI=true``): a missing service must never turn a red
build green.
"""
from __future__ import annotations

import contextlib
import os
import socket
from urllib.parse import urlparse

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, port: int) -> None:
    if _reachable(url, port):
        return
    message = f"{name} is not reachable at {url}"
    if CI:
        pytest.fail(f"{message} (CI requires it; .ci/run starts it)", pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if {"db", "transactional_db", "django_db_setup"} & set(item.fixturenames) or item.get_closest_marker("django_db"):
            item.add_marker(pytest.mark.db)


def pytest_runtest_setup(item):
    if item.get_closest_marker("postgres"):
        require_service("PostgreSQL", TEST_DATABASE_URL, 5432)
        from django.db import connection

        if connection.vendor != "postgresql":
            if CI:
                pytest.fail("postgres-marked test ran without DATABASE_URL pointing at PostgreSQL", pytrace=False)
            pytest.skip("needs DATABASE_URL=postgres://...")
    if item.get_closest_marker("redis") or item.get_closest_marker("celery"):
        require_service("Redis", TEST_REDIS_URL, 6379)


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Tests must not see another test's cached keys, configuration or buffered exposures (a
    rolled-back database reuses ids, so a leftover item would land in this test's experiment)."""
    from django.core.cache import cache

    from access import keycache, throttling
    from assignment import exposures

    with contextlib.suppress(Exception):
        cache.clear()
    keycache.clear()
    throttling.reset()
    exposures.local_buffer.take()
    yield


@pytest.fixture
def api_key():
    """``api_key(scope)`` -> raw key string for a new key of that scope."""
    from access.services import create_api_key

    def make(scope: str = "admin", **kwargs) -> str:
        _, raw = create_api_key(f"test-{scope}", scope, **kwargs)
        return raw

    return make


@pytest.fixture
def api_client_for(db, api_key):
    """``api_client_for(scope)`` -> a DRF APIClient sending that scope's key."""
    from rest_framework.test import APIClient

    def make(scope: str | None = "admin") -> APIClient:
        client = APIClient()
        if scope:
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key(scope)}")
        return client

    return make


@pytest.fixture
def admin_api(api_client_for):
    return api_client_for("admin")
