"""Settings come from the environment; production settings pass Django's deployment checks."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 20 + "production-secret-from-the-environment-0123456789",
    "ALLOWED_HOSTS": "experiments.example.com",
    "DATABASE_URL": "postgres://app:pw@db.example.com:5432/experiments",
    "REDIS_URL": "redis://redis.example.com:6379/0",
    "SECURE_SSL_REDIRECT": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def settings_in(env: dict) -> dict:
    """Import the settings in a clean interpreter with only ``env`` set."""
    code = (
        "import json, config.settings as s;"
        "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], 'name': s.DATABASES['default']['NAME'],"
        "'eager': s.CELERY_TASK_ALWAYS_EAGER, 'broker': s.CELERY_BROKER_URL, 'cache': s.CACHES['default']['BACKEND'],"
        "'debug': s.DEBUG, 'hosts': s.ALLOWED_HOSTS}))"
    )
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env},
                         capture_output=True, text=True, check=True)
    import json

    return json.loads(out.stdout)


def test_embedded_defaults():
    s = settings_in({})
    assert s["engine"] == "django.db.backends.sqlite3"
    assert s["eager"] is True and s["broker"] == "memory://"
    assert s["cache"].endswith("LocMemCache") and s["debug"] is False


def test_production_from_environment():
    s = settings_in(PRODUCTION_ENV)
    assert s["engine"] == "django.db.backends.postgresql" and s["name"] == "experiments"
    assert s["eager"] is False and s["broker"] == "redis://redis.example.com:6379/0"
    assert s["cache"].endswith("RedisCache")
    assert s["hosts"] == ["experiments.example.com"]


def test_check_deploy_has_no_warnings():
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                         cwd=ROOT, env={**clean, **PRODUCTION_ENV}, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


@pytest.mark.parametrize("message, leaked", [
    ("Forbidden: /api/v1/units/user-42", "user-42"),
    ('"GET /api/v1/experiments/x/assignment?unit_id=user-42&country=CN HTTP/1.1" 200', "user-42"),
    ("header Api-Key abcd1234.secretsecret", "secretsecret"),
])
def test_logs_carry_no_unit_ids_or_keys(message, leaked, caplog):
    import logging

    from access.logging import RedactFilter

    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "%s", (message,), None)
    RedactFilter().filter(record)
    assert leaked not in record.getMessage()
