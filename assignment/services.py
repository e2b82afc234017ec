"""Writes owned by the assignment app, for other apps and tasks to call."""
from __future__ import annotations

from . import exposures
from .models import Exposure


def flush_exposures() -> int:
    """Write every buffered exposure (this process's buffer and the shared Redis queue) to the
    database; returns how many buffered items were processed. The report pipeline calls it
    before aggregating so that reports include the latest exposures."""
    return exposures.flush()


def erase_unit(unit_id: str) -> dict[str, int]:
    """Delete everything recorded about ``unit_id`` (privacy erasure).

    Buffered exposures are flushed first so the delete also covers those already queued in
    Redis; this process's in-process buffer is purged too. Other processes' in-process
    buffers (only used in the embedded mode or while Redis is down) are out of reach: they are
    flushed within ``ASSIGNMENT_EXPOSURE_BUFFER_SECONDS``, so erase again after that to be sure.
    """
    discarded = exposures.outbox.discard_unit(unit_id) + exposures.local_buffer.discard_unit(unit_id)
    flushed = exposures.flush()
    deleted, _ = Exposure.objects.filter(unit_id=unit_id).delete()
    return {"exposures_deleted": deleted, "buffered_discarded": discarded, "flushed": flushed}
