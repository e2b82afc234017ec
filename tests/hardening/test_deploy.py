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
    # W010: the sessions app is installed (the session middleware is config.middleware's subclass,
    # which the middleware variant of the check, W012, looks for by exact name).
    "SESSION_COOKIE_SECURE": "security.W010",
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


def readme_production_env() -> dict:
    """The environment the README's production block exports, obtained by running its exact
    ``export`` lines in a shell (command substitutions included)."""
    import os

    text = (ROOT / "README.md").read_text()
    block = text.split("Production, for example:", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    exports = [line for line in block.splitlines() if line.startswith("export ")]
    assert exports, "the README's production block exports nothing"
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    out = subprocess.run(["bash", "-ec", "\n".join([*exports, "env -0"])], env=clean, capture_output=True,
                         text=True, check=True)
    env = dict(item.split("=", 1) for item in out.stdout.split("\0") if "=" in item)
    return {k: v for k, v in env.items() if k not in clean and k not in ("PWD", "SHLVL", "_", "OLDPWD")}


def test_check_deploy_is_clean_with_the_readme_environment():
    """The README promises `check --deploy` passes on its production environment: it did not
    (security.W005 HSTS subdomains, security.W021 preload) until both were exported there."""
    env = readme_production_env()
    assert {"SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECRET_KEY"} <= set(env)
    output = deploy_check(env)
    assert "System check identified no issues" in output, output
