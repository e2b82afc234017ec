"""Writes owned by the assignment app, for other apps and tasks to call."""
from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import erasure, exposures
from .models import Exposure, RejectedExposure


def flush_exposures() -> int:
    """Write every buffered exposure (this process's buffer and the shared Redis queue) to the
    database; returns how many buffered items were processed. The report pipeline calls it
    before aggregating so that reports include the latest exposures."""
    return exposures.flush()


def erase_unit(unit_id: str, *, at: datetime | None = None, flush: bool = True) -> dict:
    """Delete the unit's exposures and leave a tombstone that later writes respect.

    Copies still on their way (another process's batch or buffer, the Redis queue, a
    processing list left by a failed flush) are dropped when they are written, because they
    are timed before ``at`` (default: now); see ``assignment.erasure``. This process's own
    buffers are purged at once, and the shared queue is flushed first so that what it holds is
    deleted (and counted) now. Runs in one transaction under the exclusive erasure lock; a
    caller that deletes more (events) calls this inside its own ``transaction.atomic()`` so
    that everything is under the same lock (flushing first itself, outside that transaction:
    ``flush=False`` here). Returns counts and the ids of the experiments the
    unit was exposed in (their report snapshots may mention its attributes).
    """
    at = at or timezone.now()
    discarded = exposures.outbox.discard_unit(unit_id) + exposures.local_buffer.discard_unit(unit_id)
    # Not needed for correctness (the tombstone is), but what is queued now is deleted now and
    # counted in the answer.
    flushed = exposures.flush() if flush else 0
    with transaction.atomic():
        erasure.lock_for_erasure()
        erasure.record(unit_id, at)
        rows = Exposure.objects.filter(unit_id=unit_id)
        experiment_ids = sorted(set(rows.values_list("experiment_id", flat=True)))
        deleted, _ = rows.delete()
        digest = erasure.unit_hash(unit_id)
        # Malformed messages have no unit hash; their text may still hold the id (ASCII JSON).
        escaped = exposures._dumps_ascii(unit_id)[1:-1]
        rejected, _ = RejectedExposure.objects.filter(
            Q(unit_hash=digest) | Q(unit_hash="", item__contains=escaped)).delete()
    return {"exposures_deleted": deleted, "buffered_discarded": discarded, "rejected_deleted": rejected,
            "flushed": flushed, "experiment_ids": experiment_ids}
