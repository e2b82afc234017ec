"""Process-local cache of verified API keys, so authentication makes no database query once warm.

Every change to a key bumps a version stamp in the shared cache; each process re-reads the stamp
at most every ``STAMP_CHECK_SECONDS`` and drops its copies when it moved, so a revoked key stops
working everywhere within about a second.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

STAMP_KEY = "access:apikeys:version"
STAMP_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class KeyRecord:
    id: str
    prefix: str
    name: str
    scope: str
    revoked: bool
    expiry_date: datetime | None
    #: The environment whose configuration the key sees.
    environment: str = "production"

    @property
    def expired(self) -> bool:
        return self.expiry_date is not None and self.expiry_date < timezone.now()


_lock = threading.Lock()
_records: dict[str, KeyRecord | None] = {}
_stamp: object = None
_checked_at = 0.0


def bump_version() -> None:
    """Tell every process that keys changed."""
    with contextlib.suppress(Exception):  # shared cache down: processes re-read every 30 s
        cache.set(STAMP_KEY, time.time_ns(), timeout=None)
    clear()


def clear() -> None:
    global _stamp, _checked_at
    with _lock:
        _records.clear()
        _stamp = None
        _checked_at = 0.0


def _refresh_stamp() -> None:
    global _stamp, _checked_at
    now = time.monotonic()
    if now - _checked_at < STAMP_CHECK_SECONDS:
        return
    try:
        stamp = cache.get(STAMP_KEY)
    except Exception:
        stamp = ("unavailable", int(now // 30))  # without the shared cache, re-read every 30 s
    with _lock:
        if stamp != _stamp:
            _records.clear()
            _stamp = stamp
        _checked_at = now


def _digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8", "surrogatepass")).hexdigest()


def lookup(raw_key: str) -> KeyRecord | None:
    """Return the key's record if ``raw_key`` is a genuine key (possibly revoked or expired)."""
    from .models import APIKey

    _refresh_stamp()
    digest = _digest(raw_key)
    if digest in _records:
        return _records[digest]
    prefix, dot, _ = raw_key.partition(".")
    record = None
    if dot and 0 < len(prefix) <= 8:
        obj = APIKey.objects.filter(prefix=prefix).select_related("environment").first()
        if obj is not None and obj.is_valid(raw_key):
            record = KeyRecord(obj.id, obj.prefix, obj.name, obj.scope, obj.revoked, obj.expiry_date,
                               obj.environment_key)
    with _lock:
        if len(_records) > 10_000:  # bound memory against floods of bogus keys
            _records.clear()
        _records[digest] = record
    return record
