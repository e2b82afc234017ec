"""Tombstones of erased units, and the lock that makes "check the tombstone, then write" safe.

An erasure deletes the unit's rows, but copies may still be on their way to the database: an
exposure in another process's batch or in-process buffer, in the Redis queue or in a processing
list left by a failed flush, an event request in flight. So the erasure also records a tombstone
``(hash of the unit id, erased_at)``, and every write of exposures or events drops the unit's
items whose time is at or before ``erased_at`` (what happened before the erasure). A *new*
assignment or event after the erasure is new data and is written.

Race-free on PostgreSQL: writers take a *shared* transaction-level advisory lock before they read
the tombstones and keep it until their rows commit; an erasure takes the same lock *exclusively*
before it writes its tombstone and deletes. So either the write commits first (and the erasure,
waiting for the lock, then deletes what it wrote) or the erasure commits first (and the writer,
waiting for the lock, then sees the tombstone). Writers never wait for each other. SQLite runs
every write transaction alone (``BEGIN IMMEDIATE``), which gives the same order.

The hash is an HMAC of the unit id keyed with ``SECRET_KEY`` (a plain hash of an e-mail address
can be reversed by hashing candidates); rotating ``SECRET_KEY`` orphans existing tombstones.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import connection

#: The advisory lock id (any constant 64-bit number; "erasure" in ASCII).
LOCK_ID = 0x65726173757265
_CHUNK = 1000  # one query for a full event batch

_keyed: dict[str, hmac.HMAC] = {}


def unit_hash(unit_id: str) -> str:
    """The keyed hash stored instead of the unit id (64 hex characters)."""
    secret = settings.SECRET_KEY
    base = _keyed.get(secret)
    if base is None:
        key = hashlib.sha256(b"assignment.erasure.tombstone" + secret.encode()).digest()
        base = _keyed[secret] = hmac.new(key, digestmod=hashlib.sha256)
    digest = base.copy()  # the keyed state is computed once
    digest.update(unit_id.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _lock(function: str) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite: the write transaction itself is exclusive
    if not connection.in_atomic_block:  # pragma: no cover - a programming error
        raise RuntimeError("the erasure lock must be taken inside transaction.atomic()")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [LOCK_ID])


def lock_for_write() -> None:
    """Shared lock for a transaction that writes exposures or events (before reading tombstones)."""
    _lock("pg_advisory_xact_lock_shared")


def lock_for_erasure() -> None:
    """Exclusive lock for the erasure transaction (before writing its tombstone)."""
    _lock("pg_advisory_xact_lock")


def erased_at(unit_ids: Iterable[str], *, since: datetime | None = None) -> dict[str, datetime]:
    """``{unit_id: erased_at}`` for the erased units among ``unit_ids``.

    ``since``: only erasures at or after it matter (the oldest item's time): usually none, and
    then one indexed query answers without hashing a single unit id.
    """
    from .models import UnitTombstone

    tombstones = UnitTombstone.objects.all()
    if since is not None:
        tombstones = tombstones.filter(erased_at__gte=since)
        if not tombstones.exists():
            return {}
    by_hash: dict[str, str] = {}
    for unit in set(unit_ids):
        if isinstance(unit, str):
            by_hash[unit_hash(unit)] = unit
    found: dict[str, datetime] = {}
    hashes = list(by_hash)
    for start in range(0, len(hashes), _CHUNK):
        rows = tombstones.filter(unit_hash__in=hashes[start : start + _CHUNK])
        for digest, when in rows.values_list("unit_hash", "erased_at"):
            found[by_hash[digest]] = when
    return found


def record(unit_id: str, at: datetime) -> None:
    """Write (or move forward) the unit's tombstone; call under :func:`lock_for_erasure`."""
    from .models import UnitTombstone

    digest = unit_hash(unit_id)
    updated = UnitTombstone.objects.filter(unit_hash=digest, erased_at__lt=at).update(erased_at=at)
    if not updated:
        UnitTombstone.objects.get_or_create(unit_hash=digest, defaults={"erased_at": at})
