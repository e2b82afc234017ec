"""Event ingestion: validate plain dicts by hand, write each batch with one bulk statement.

The HTTP endpoint and ``import_events`` both call :func:`ingest_events`, so both apply the same
rules and the same idempotency. Per-event validation is hand-written (a few microseconds per
event, an order of magnitude cheaper than a DRF serializer per event) because ingestion speed is
the point of this module.

Idempotency rests on the unique ``event_id``: the batch is written with ``INSERT ... ON CONFLICT
(event_id) DO NOTHING``, and the number of rows the database actually inserted separates
accepted events from duplicates exactly, even when two retries of a batch race each other.
Database errors (``OperationalError`` when it is down) propagate, so the API answers 503.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction

from experiments.models import EVENT_NAME_VALIDATOR

from . import clickhouse, stream
from .models import Event

MAX_BATCH = 1000
MAX_ID_LENGTH = 256
MAX_PROPERTIES = 50
MAX_PROPERTY_KEY_LENGTH = 128
MAX_PROPERTY_STRING_LENGTH = 1024
MAX_PROPERTIES_BYTES = 8 * 1024
MAX_TIMESTAMP_LENGTH = 64
#: Largest accepted |value|. Revenue in cents up to ten trillion dollars fits; the metric cap has
#: the same bound; integers stay exact (< 2**53); and sums of squares cannot overflow a double:
#: a unit's total over 1e9 events is at most 1e24, its square 1e48, and a sum of squares over
#: 1e10 units at most 1e58 -- some 250 orders of magnitude below the largest double (1.8e308).
MAX_EVENT_VALUE = 1e15
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)
FIELDS = frozenset({"event_id", "unit_id", "event", "value", "timestamp", "properties"})

# The experiments app's validator uses search() with ``$``, which also accepts a trailing newline;
# fullmatch() with the same pattern does not.
_event_name_ok = re.compile(EVENT_NAME_VALIDATOR.regex.pattern).fullmatch
_EMPTY_PROPERTIES = "{}"

# Messages, shared with the import command's summary (which counts rejections per reason).
REQUIRED = "This field is required."
NOT_A_STRING = "Must be a string."
BAD_TEXT = "Must not contain NUL characters or unpaired surrogates."
ID_LENGTH = f"Must be 1-{MAX_ID_LENGTH} characters, not only whitespace."
EVENT_NAME = EVENT_NAME_VALIDATOR.message
NOT_A_NUMBER = "Must be a finite number."
VALUE_RANGE = "Must be a finite number from -1e15 to 1e15."  # MAX_EVENT_VALUE
BAD_TIMESTAMP = "Must be an ISO 8601 date-time string, e.g. 2026-11-24T10:00:00Z."
TOO_OLD = f"Must not be before {EARLIEST_TIMESTAMP:%Y-%m-%d}."
TOO_NEW = "Must not be more than a day in the future."
NOT_AN_OBJECT = "Must be a JSON object."
UNKNOWN_FIELD = "Unknown field."
TOO_MANY_PROPERTIES = f"At most {MAX_PROPERTIES} properties."
PROPERTY_KEY = f"Property names must be 1-{MAX_PROPERTY_KEY_LENGTH} characters."
PROPERTY_VALUE = (
    "Property values must be strings (at most "
    f"{MAX_PROPERTY_STRING_LENGTH} characters), finite numbers, booleans or null."
)
PROPERTIES_SIZE = f"Properties must serialize to at most {MAX_PROPERTIES_BYTES} bytes."
NOT_AN_EVENT = "Expected an event object."
ERASED_UNIT = "This unit's data was erased; events from before the erasure are not stored."


@dataclass
class IngestResult:
    """What happened to one batch: the API answers it as it is."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


# A validated event, in column order: event_id, unit_id, event, value, timestamp, properties JSON.
Row = tuple[str, str, str, float | None, datetime, str]


def text_ok(value: str) -> bool:
    """Storable in PostgreSQL text and JSON: no NUL, valid UTF-8 (no lone surrogates)."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    """A client-chosen field name, safe to echo back in JSON (short, valid UTF-8)."""
    name = name[:100]
    return name if text_ok(name) else name.encode("utf-8", "backslashreplace").decode("ascii", "replace")


def _id_error(value: Any) -> str | None:
    if type(value) is not str:
        return REQUIRED if value is None else NOT_A_STRING
    if not 0 < len(value) <= MAX_ID_LENGTH or value.isspace():
        return ID_LENGTH
    if not text_ok(value):
        return BAD_TEXT
    return None


def parse_timestamp(value: Any, now: datetime) -> tuple[datetime | None, str | None]:
    """An aware UTC datetime (naive input is taken as UTC), or an error message."""
    # A date and a time ("2026-11-24" alone is a date, not an instant).
    if type(value) is not str or not 16 <= len(value) <= MAX_TIMESTAMP_LENGTH or value[10] not in "Tt ":
        return None, BAD_TIMESTAMP
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None, BAD_TIMESTAMP
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    else:
        try:
            ts = ts.astimezone(UTC)
        except (OverflowError, ValueError):  # e.g. 0001-01-01T00:00:00+01:00
            return None, TOO_OLD
    if ts < EARLIEST_TIMESTAMP:
        return None, TOO_OLD
    if ts > now + FUTURE_TOLERANCE:
        return None, TOO_NEW
    return ts, None


def _number(value: Any) -> float | None:
    """A finite float, or None when ``value`` is not one (bools are not numbers here)."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        try:
            x = float(value)
        except OverflowError:
            return None
        return x if math.isfinite(x) else None
    return None


def _properties(value: Any) -> tuple[str | None, str | None]:
    """The properties as compact JSON, or an error message."""
    if value is None:
        return _EMPTY_PROPERTIES, None
    if type(value) is not dict:
        return None, NOT_AN_OBJECT
    if not value:
        return _EMPTY_PROPERTIES, None
    if len(value) > MAX_PROPERTIES:
        return None, TOO_MANY_PROPERTIES
    for key, item in value.items():
        if not 0 < len(key) <= MAX_PROPERTY_KEY_LENGTH or not text_ok(key):
            return None, PROPERTY_KEY
        kind = type(item)
        if kind is str:
            if len(item) > MAX_PROPERTY_STRING_LENGTH or not text_ok(item):
                return None, PROPERTY_VALUE
        elif kind is float or kind is int:
            if _number(item) is None:
                return None, PROPERTY_VALUE
        elif item is not None and kind is not bool:
            return None, PROPERTY_VALUE
    text = json.dumps(value, separators=(",", ":"))
    if len(text) > MAX_PROPERTIES_BYTES:  # ensure_ascii: characters == bytes
        return None, PROPERTIES_SIZE
    return text, None


def validate_event(item: Any, now: datetime) -> tuple[Row | None, dict[str, list[str]] | None]:
    """Check one event (a plain dict, as decoded from JSON); return its row or its errors."""
    if type(item) is not dict:
        return None, {"non_field_errors": [NOT_AN_EVENT]}
    errors: dict[str, list[str]] = {}
    if len(item) > 6 or not FIELDS.issuperset(item):
        for name in item:
            if name not in FIELDS:
                errors[_printable(name)] = [UNKNOWN_FIELD]
                if len(errors) >= 10:
                    break
    get = item.get
    event_id, unit_id, name = get("event_id"), get("unit_id"), get("event")
    message = _id_error(event_id)
    if message:
        errors["event_id"] = [message]
    message = _id_error(unit_id)
    if message:
        errors["unit_id"] = [message]
    if type(name) is not str:
        errors["event"] = [REQUIRED if name is None else NOT_A_STRING]
    elif not _event_name_ok(name):
        errors["event"] = [EVENT_NAME]
    value = get("value")
    if value is not None:
        number = _number(value)
        if number is None:
            errors["value"] = [NOT_A_NUMBER]
        elif not -MAX_EVENT_VALUE <= number <= MAX_EVENT_VALUE:
            errors["value"] = [VALUE_RANGE]
        value = number
    raw_ts = get("timestamp")
    if raw_ts is None:
        ts = now
    else:
        ts, message = parse_timestamp(raw_ts, now)
        if message:
            errors["timestamp"] = [message]
    props, message = _properties(get("properties"))
    if message:
        errors["properties"] = [message]
    if errors:
        return None, errors
    return (event_id, unit_id, name, value, ts, props), None  # type: ignore[return-value]


def ingest_events(items: Sequence[Any], *, now: datetime | None = None) -> IngestResult:
    """Validate a batch and store its valid events once each; report every event's fate.

    Valid events are kept even when others are rejected. An ``event_id`` seen earlier in the
    same batch, or already stored, counts as a duplicate: a retried batch changes nothing.
    """
    now = now or datetime.now(UTC)
    result = IngestResult()
    rows: list[Row] = []
    seen: set[str] = set()
    in_batch_duplicates = 0
    for index, item in enumerate(items):
        row, errors = validate_event(item, now)
        if errors is not None:
            result.rejected.append({"index": index, "errors": errors})
            continue
        event_id = row[0]  # type: ignore[index]
        if event_id in seen:
            in_batch_duplicates += 1
            continue
        seen.add(event_id)
        rows.append(row)  # type: ignore[arg-type]
    erased: list[str] = []
    if clickhouse.enabled():
        inserted = append_to_stream(rows, received_at=now, erased=erased)
    else:
        inserted = write_events(rows, received_at=now, erased=erased)
    if erased:  # events of erased units from before their erasure (analysis.privacy)
        refused = set(erased)
        for index, item in enumerate(items):
            if isinstance(item, dict) and item.get("event_id") in refused:
                refused.discard(item["event_id"])
                result.rejected.append({"index": index, "errors": {"unit_id": [ERASED_UNIT]}})
        result.rejected.sort(key=lambda r: r["index"])
    result.accepted = inserted
    result.duplicates = in_batch_duplicates + len(rows) - len(erased) - inserted
    return result


# --- the bulk write ------------------------------------------------------------------------------

def _columns() -> tuple[str, list[str]]:
    meta = Event._meta
    quote = connection.ops.quote_name
    names = ("event_id", "unit_id", "event", "value", "timestamp", "properties", "received_at")
    return quote(meta.db_table), [quote(meta.get_field(n).column) for n in names]


def write_events(rows: Sequence[Row], *, received_at: datetime, erased: list[str] | None = None) -> int:
    """Insert rows whose ``event_id`` is new in one statement; return how many were inserted.

    PostgreSQL: one ``INSERT ... SELECT FROM unnest(arrays)`` (seven array parameters, a
    constant statement text; about as fast as COPY for batches of this size). SQLite: one
    multi-row ``INSERT ... VALUES`` per chunk that fits the variable limit, in one transaction.
    Both count inserted rows from the statement's row count, which with ``ON CONFLICT DO
    NOTHING`` excludes the skipped duplicates.
    """
    if not rows:
        return 0
    with transaction.atomic():
        rows = _without_erased(rows, erased)
        if not rows:
            return 0
        if connection.vendor == "postgresql":
            return _write_postgresql(rows, received_at)
        return _write_generic(rows, received_at)


def append_to_stream(rows: Sequence[Row], *, received_at: datetime, erased: list[str] | None = None) -> int:
    """``ANALYTICS_BACKEND=clickhouse``: append the batch to the event stream (one entry), for the
    loader to insert into ClickHouse; returns how many events it holds.

    Events of erased units from before their erasure are refused here already (no lock needed:
    an erasure that commits between this check and the append purges the stream first or is
    seen by the loader, which checks the tombstones again under the lock). Duplicates of events
    stored earlier are not known here; ClickHouse reads them once (``analysis.clickhouse``).
    Raises ``stream.StreamFull`` / ``stream.StreamUnavailable`` (the API answers 503).
    """
    from assignment import erasure

    if not rows:
        return 0
    tombstones = erasure.erased_at((row[1] for row in rows), since=min(row[4] for row in rows))
    if tombstones:
        kept = []
        for row in rows:
            when = tombstones.get(row[1])
            if when is not None and row[4] <= when:
                if erased is not None:
                    erased.append(row[0])
            else:
                kept.append(row)
        rows = kept
    return stream.append_events(rows, received_at)


def _without_erased(rows: Sequence[Row], erased: list[str] | None) -> Sequence[Row]:
    """Drop events of erased units timed at or before the erasure (their ids go to ``erased``).

    Under the erasure lock, in the write's transaction (``assignment.erasure``): an erasure
    running at the same time either commits first (and is seen here) or waits for this batch
    (and deletes it).
    """
    from assignment import erasure

    erasure.lock_for_write()
    tombstones = erasure.erased_at((row[1] for row in rows), since=min(row[4] for row in rows))
    if not tombstones:
        return rows
    kept = []
    for row in rows:
        when = tombstones.get(row[1])
        if when is not None and row[4] <= when:
            if erased is not None:
                erased.append(row[0])
        else:
            kept.append(row)
    return kept


def _write_postgresql(rows: Sequence[Row], received_at: datetime) -> int:
    """One statement, seven array parameters bound server-side in binary.

    Django's psycopg cursors bind parameters client-side, quoting every array element in Python
    (about 35 ms per 1,000 events); a plain psycopg cursor on the same connection sends the
    arrays in binary (about 1 ms). Errors are wrapped like Django's own cursors, so an
    unreachable database still surfaces as ``django.db.OperationalError`` (503).
    """
    import psycopg

    table, cols = _columns()
    sql = (
        f"INSERT INTO {table} ({', '.join(cols)}) "
        "SELECT i, u, n, v, t, p::jsonb, %b FROM unnest("
        "%b::text[], %b::text[], %b::text[], %b::float8[], %b::timestamptz[], %b::text[]"
        ") AS r(i, u, n, v, t, p) "
        f"ON CONFLICT ({cols[0]}) DO NOTHING"
    )
    ids, units, names, values, stamps, props = (list(c) for c in zip(*rows, strict=True))
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, [received_at, ids, units, names, values, stamps, props])
        return cursor.rowcount


def _sqlite_variable_limit() -> int:
    connection.ensure_connection()
    raw = connection.connection
    try:
        import sqlite3

        return raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    except (AttributeError, ImportError):  # not SQLite, or Python < 3.11
        return 999


def _write_generic(rows: Sequence[Row], received_at: datetime) -> int:
    table, cols = _columns()
    adapt = connection.ops.adapt_datetimefield_value
    received = adapt(received_at)
    per_row = len(cols)
    chunk_size = max(1, min(len(rows), _sqlite_variable_limit() // per_row))
    head = f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
    tail = f" ON CONFLICT ({cols[0]}) DO NOTHING"
    one = "(" + ", ".join(["%s"] * per_row) + ")"
    inserted = 0
    with connection.cursor() as cursor:  # inside write_events' transaction
        for start in range(0, len(rows), chunk_size):
            chunk = rows[start : start + chunk_size]
            params: list[Any] = []
            for event_id, unit_id, name, value, ts, props in chunk:
                params += (event_id, unit_id, name, value, adapt(ts), props, received)
            cursor.execute(head + ", ".join([one] * len(chunk)) + tail, params)
            inserted += cursor.rowcount
    return inserted


def chunked(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    """Lists of at most ``size`` items (the import command's batches)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
