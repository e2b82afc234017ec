"""Production configuration comes from the environment only, and forgetting it is caught.

tests/config/test_settings.py shows a complete production environment passes
``check --deploy`` with no warning; here, each missing or unsafe piece is flagged.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.config.test_settings import PRODUCTION_ENV

ROOT = Path(__file__).resolve().parents[2]


def deploy_check(env: dict) -> str:
    import os

    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env={**clean, **env},
                         capture_output=True, text=True)
    return out.stdout + out.stderr


FORGOTTEN = {
    "SECRET_KEY": "security.W009",  # the embedded default key must never pass in production
    "SECURE_HSTS_SECONDS": "security.W004",
    "SESSION_COOKIE_SECURE": "security.W012",
    "CSRF_COOKIE_SECURE": "security.W016",
    "SECURE_SSL_REDIRECT": "security.W008",
}


def test_check_deploy_flags_what_production_forgot():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k not in FORGOTTEN}
    output = deploy_check(env)
    for setting, warning in FORGOTTEN.items():
        assert warning in output, f"{setting} missing is not flagged"


def test_no_secret_or_host_is_written_in_the_settings():
    """Settings read secrets and hosts from the environment; the file holds no literal ones."""
    text = (ROOT / "config" / "settings.py").read_text()
    assert re.findall(r"^SECRET_KEY\s*=\s*env\.str\(\"SECRET_KEY\"", text, flags=re.M)
    assert re.findall(r"^ALLOWED_HOSTS\s*=\s*env\.list\(\"ALLOWED_HOSTS\"", text, flags=re.M)
    assert re.findall(r"^DEBUG\s*=\s*env\.bool\(\"DEBUG\", default=False\)", text, flags=re.M)
    for literal in re.findall(r"(?:postgres|redis)://[^\"'\s]+", text):
        pytest.fail(f"a service URL is written in settings.py: {literal}")
