"""Writes for API keys, shared by the admin, the management command and tests."""
from __future__ import annotations

from datetime import datetime

from .models import APIKey, Scope


def create_api_key(name: str, scope: str, expiry_date: datetime | None = None) -> tuple[APIKey, str]:
    """Create a key and return it with the raw secret, which is never stored and shown once."""
    if scope not in Scope.values:
        raise ValueError(f"scope must be one of {', '.join(Scope.values)}")
    return APIKey.objects.create_key(name=name, scope=scope, expiry_date=expiry_date)


def revoke_api_key(key: APIKey) -> None:
    key.revoked = True
    key.save(update_fields=["revoked"])
