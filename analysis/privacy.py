"""Erasure of everything recorded about one unit (a data subject's right to be forgotten).

Every copy: events (with ``ANALYTICS_BACKEND=clickhouse`` in ClickHouse and in the pending
event stream too), exposures (stored, buffered or queued: a tombstone makes later writes of
the unit's data from before the erasure drop it, see ``assignment.erasure``), rejected exposures,
QA overrides with their history, the admin log's mentions of those overrides, and segment rows
of stored report snapshots small enough to single the unit out. docs/operations.md states the
guarantee.
"""
from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import clickhouse, stream
from .models import Event, ReportSnapshot

#: What a redacted mention of the unit in the admin log reads.
ERASED = "(erased unit)"
#: Segment values that name no unit and are never dropped.
NEUTRAL_SEGMENTS = ("(other)", "(none)")


def segment_min_units() -> int:
    """Segment values with fewer units are merged into "(other)" (never shown on their own)."""
    return max(1, int(getattr(settings, "REPORT_SEGMENT_MIN_UNITS", 20)))


def erase_unit(unit_id: str) -> dict[str, int]:
    """Delete the unit's events, exposures and overrides (with their history); return counts.

    Exposures and events are deleted under the exclusive erasure lock, after the tombstone is
    written, in one transaction, so a concurrent flush or event batch either commits before
    (and is deleted here) or sees the tombstone. Deleting an override through the ORM writes a
    "deleted" history row and invalidates the assignment configuration; the history rows (which
    hold the unit id) are removed afterwards. The admin log and report snapshots are cleaned
    after the commit (they receive nothing new about the unit once it is erased).
    """
    from assignment import services as assignment_services
    from experiments.flags import erase_unit as erase_from_flag_rules
    from experiments.models import Override

    at = timezone.now()
    # Outside the transaction: the flush takes the erasure lock shared, and two erasures each
    # holding it shared while waiting for it exclusively would deadlock.
    assignment_services.flush_exposures()
    with transaction.atomic():
        erased = assignment_services.erase_unit(unit_id, at=at, flush=False)
        events, _ = Event.objects.filter(unit_id=unit_id).delete()
        _, per_model = Override.objects.filter(unit_id=unit_id).delete()
        overrides = per_model.get(Override._meta.label, 0)
        Override.history.filter(unit_id=unit_id).delete()
        erase_from_flag_rules(unit_id)  # feature flags' listed units, with their history
        if clickhouse.enabled():  # under the same lock: a loader inserts before, or sees the tombstone
            events += stream.purge_unit(unit_id) + clickhouse_erase(unit_id)
    redact_admin_log(unit_id)
    scrub_snapshots(erased.get("experiment_ids", []))
    return {"events": events, "exposures": int(erased.get("exposures_deleted", 0)), "overrides": overrides}


def clickhouse_erase(unit_id: str) -> int:
    """Delete the unit from ClickHouse; an unreachable server raises ``StreamUnavailable`` (503:
    the erasure is rolled back and retried, never half done in silence)."""
    try:
        return clickhouse.erase_unit(unit_id)
    except Exception as exc:
        raise stream.StreamUnavailable(f"ClickHouse is unreachable ({type(exc).__name__})") from exc


# --- the admin log ---------------------------------------------------------------------------

def _mentions(text: Any, unit_id: str) -> bool:
    """Whether an admin-log string names the unit: its id, or an override ("<unit> -> variant")."""
    return isinstance(text, str) and (text == unit_id or text.startswith(f"{unit_id} -> "))


def _redact(text: str, unit_id: str) -> str:
    return ERASED + text[len(unit_id):]


def _redact_message(value: Any, unit_id: str) -> tuple[Any, bool]:
    if isinstance(value, str):
        return (_redact(value, unit_id), True) if _mentions(value, unit_id) else (value, False)
    if isinstance(value, list):
        pairs = [_redact_message(v, unit_id) for v in value]
        return [v for v, _ in pairs], any(c for _, c in pairs)
    if isinstance(value, dict):
        pairs = {k: _redact_message(v, unit_id) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(c for _, c in pairs.values())
    return value, False


def redact_admin_log(unit_id: str) -> int:
    """Replace the unit's id in admin log entries (``LogEntry``) that name it; return how many.

    QA overrides are edited in the experiment's admin page, so the log keeps "<unit> -> variant"
    as the object of an added, changed or deleted override (``change_message``) or as the
    ``object_repr`` of an entry about an override. Entries stay (the audit of who changed what),
    with ``(erased unit)`` in place of the id.
    """
    from django.contrib.admin.models import LogEntry

    escaped = json.dumps(unit_id)[1:-1]
    candidates = LogEntry.objects.filter(
        Q(object_repr__contains=unit_id) | Q(change_message__contains=unit_id)
        | Q(change_message__contains=escaped)
    )
    changed = 0
    with transaction.atomic():
        for entry in candidates.select_for_update():
            fields = []
            if _mentions(entry.object_repr, unit_id):
                entry.object_repr = _redact(entry.object_repr, unit_id)
                fields.append("object_repr")
            try:
                message = json.loads(entry.change_message or "null")
            except ValueError:
                message = entry.change_message
            redacted, hit = _redact_message(message, unit_id)
            if hit:
                entry.change_message = redacted if isinstance(redacted, str) else json.dumps(redacted)
                fields.append("change_message")
            if fields:
                entry.save(update_fields=fields)
                changed += 1
    return changed


# --- report snapshots ----------------------------------------------------------------------------

def _segment_units(rows: Any) -> int:
    try:
        return int(sum(v.get("units") or 0 for v in rows[0]["variants"]))
    except (IndexError, KeyError, TypeError, AttributeError, ValueError):
        return 0


def scrub_segments(payload: dict, min_units: int) -> bool:
    """Drop segment rows with fewer than ``min_units`` units from a snapshot payload."""
    segments = payload.get("segments") if isinstance(payload, dict) else None
    if not isinstance(segments, dict):
        return False
    changed = False
    for attribute, block in segments.items():
        if not isinstance(block, dict):
            continue
        small = [value for value, rows in block.items()
                 if value not in NEUTRAL_SEGMENTS and _segment_units(rows) < min_units]
        for value in small:
            del block[value]
            changed = True
        segments[attribute] = block
    return changed


def scrub_snapshots(experiment_ids: list[int]) -> int:
    """Re-apply the minimum segment size to stored snapshots of the unit's experiments.

    Segment rows are computed from exposure attributes (targeting attributes may be an e-mail
    address); a row with fewer than ``REPORT_SEGMENT_MIN_UNITS`` units could name the unit. New
    snapshots merge such values into "(other)" when computed; older ones lose those rows here
    (their statistics cannot be merged afterwards). Returns how many snapshots changed.
    """
    if not experiment_ids:
        return 0
    min_units = segment_min_units()
    changed = 0
    snapshots = ReportSnapshot.objects.filter(experiment_id__in=experiment_ids).only("id", "payload")
    for snapshot in snapshots.iterator(chunk_size=50):
        if scrub_segments(snapshot.payload, min_units):
            ReportSnapshot.objects.filter(pk=snapshot.pk).update(payload=snapshot.payload)
            changed += 1
    return changed
