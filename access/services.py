"""Writes for API keys, shared by the admin, the management command and tests."""
from __future__ import annotations

from datetime import datetime

from .models import DEFAULT_ENVIRONMENTS, APIKey, Environment, Scope


def get_environment(key: str) -> Environment | None:
    """The environment with this key; the three defaults are (re)created when missing (a flushed
    test database has lost the rows the migration made)."""
    environment = Environment.objects.filter(key=key).first()
    if environment is None and key in dict(DEFAULT_ENVIRONMENTS):
        environment, _ = Environment.objects.get_or_create(key=key, defaults={"name": dict(DEFAULT_ENVIRONMENTS)[key]})
    return environment


def create_api_key(
    name: str, scope: str, expiry_date: datetime | None = None, environment: str | None = None,
) -> tuple[APIKey, str]:
    """Create a key and return it with the raw secret, which is never stored and shown once.

    ``environment`` (a key) is the configuration the key sees; None means production."""
    if scope not in Scope.values:
        raise ValueError(f"scope must be one of {', '.join(Scope.values)}")
    env = None
    if environment is not None:
        env = get_environment(environment)
        if env is None:
            raise ValueError(f"no environment {environment!r}")
    return APIKey.objects.create_key(name=name, scope=scope, expiry_date=expiry_date, environment=env)


def revoke_api_key(key: APIKey) -> None:
    key.revoked = True
    key.save(update_fields=["revoked"])
