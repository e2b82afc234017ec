"""Exposures mirrored to ClickHouse through the event stream (``ANALYTICS_BACKEND=clickhouse``).

``assignment`` sends ``exposures_written`` inside the transaction that upserts exposures into
Django's database (under the shared erasure lock); this receiver appends the same rows to the
stream as one entry. If the stream refuses (full, unreachable) the receiver raises, the upsert
rolls back and the exposures stay queued for the next flush: Django's table and ClickHouse
never disagree for long, and nothing is dropped. ClickHouse keeps, per (experiment, phase,
unit), the row with the earliest ``first_seen`` (``analysis.clickhouse``), which is the upsert's
own rule, so the order rows arrive in does not matter.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import clickhouse, stream


def _mirror(sender, rows: Sequence[Sequence[Any]], **kwargs: Any) -> None:
    if clickhouse.enabled():
        stream.append_exposures(rows)


def connect() -> None:
    from assignment.signals import exposures_written

    exposures_written.connect(_mirror, weak=False, dispatch_uid="analysis-mirror-exposures")
