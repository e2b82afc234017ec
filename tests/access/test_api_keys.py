"""API keys: hashed at rest, shown once, scoped, revocable, expirable."""
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import APIKey
from access.services import create_api_key, revoke_api_key

pytestmark = pytest.mark.django_db


def client_with(header: str | None) -> APIClient:
    c = APIClient()
    if header is not None:
        c.credentials(HTTP_AUTHORIZATION=header)
    return c


def test_key_is_stored_hashed(db):
    obj, raw = create_api_key("ci", "admin")
    stored = APIKey.objects.get(pk=obj.pk)
    assert raw not in stored.hashed_key and raw not in stored.id
    assert stored.hashed_key.startswith("sha512$$")
    assert stored.is_valid(raw)


def test_management_command_prints_key_last(capsys, db):
    call_command("create_api_key", "deploy-bot", "--scope", "analyst")
    lines = capsys.readouterr().out.strip().splitlines()
    raw = lines[-1]
    assert "." in raw and " " not in raw
    assert APIKey.objects.get(name="deploy-bot").scope == "analyst"
    assert client_with(f"Api-Key {raw}").get("/api/v1/metrics").status_code == 200


@pytest.mark.parametrize("header", ["", "Bearer abc", "Api-Key", "Api-Key nope", "Api-Key abc.def", "Api-Key " + "x" * 5000])
def test_bad_credentials_are_401_json(db, header):
    r = client_with(header).get("/api/v1/metrics")
    assert r.status_code == 401
    assert "detail" in r.json()


def test_revoked_and_expired_keys(db):
    obj, raw = create_api_key("k", "admin")
    c = client_with(f"Api-Key {raw}")
    assert c.get("/api/v1/metrics").status_code == 200
    revoke_api_key(obj)
    r = c.get("/api/v1/metrics")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    _, raw2 = create_api_key("old", "admin", expiry_date=timezone.now() - timedelta(minutes=1))
    r = client_with(f"Api-Key {raw2}").get("/api/v1/metrics")
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_authentication_makes_no_query_once_warm(db, django_assert_num_queries):
    _, raw = create_api_key("k", "admin")
    from rest_framework.test import APIRequestFactory

    from access.authentication import APIKeyAuthentication

    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Api-Key {raw}")
    auth = APIKeyAuthentication()
    auth.authenticate(request)
    with django_assert_num_queries(0):
        user, record = auth.authenticate(request)
    assert user.scope == "admin"


def test_rate_limit_per_key(db, settings):
    from rest_framework.settings import api_settings

    rates = dict(api_settings.DEFAULT_THROTTLE_RATES)
    api_settings.DEFAULT_THROTTLE_RATES["api_key"] = "3/min"
    try:
        _, raw = create_api_key("k", "analyst")
        _, other = create_api_key("k2", "analyst")
        c = client_with(f"Api-Key {raw}")
        assert [c.get("/api/v1/metrics").status_code for _ in range(3)] == [200, 200, 200]
        r = c.get("/api/v1/metrics")
        assert r.status_code == 429 and int(r["Retry-After"]) >= 1
        assert client_with(f"Api-Key {other}").get("/api/v1/metrics").status_code == 200
    finally:
        api_settings.DEFAULT_THROTTLE_RATES.clear()
        api_settings.DEFAULT_THROTTLE_RATES.update(rates)


def test_batched_counting_is_exact_at_the_limit(db):
    """Far from the limit the throttle counts locally; near it, every request hits the shared
    counter, so one process never lets more than the limit through."""
    from types import SimpleNamespace

    from django.core.cache import cache
    from rest_framework.settings import api_settings

    from access.throttling import APIKeyRateThrottle

    rates = dict(api_settings.DEFAULT_THROTTLE_RATES)
    api_settings.DEFAULT_THROTTLE_RATES["api_key"] = "1500/h"
    try:
        request = SimpleNamespace(user=SimpleNamespace(key=SimpleNamespace(prefix="batched")))
        allowed = sum(APIKeyRateThrottle().allow_request(request, None) for _ in range(1700))
        assert allowed == 1500
        # Every request reached the shared counter in the end (other processes see them).
        assert cache.get(f"rl:batched:{int(time.time() // 3600)}") == 1700
    finally:
        api_settings.DEFAULT_THROTTLE_RATES.clear()
        api_settings.DEFAULT_THROTTLE_RATES.update(rates)
