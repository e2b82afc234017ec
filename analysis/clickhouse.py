"""ClickHouse as the event and analysis store (``ANALYTICS_BACKEND=clickhouse``): DDL, clients.

Definitions stay in Django's database; events reach ClickHouse through the Redis stream and
its loader (``analysis.stream``, ``analysis.loader``), exposures are mirrored the same way
(``analysis.mirror``), and the builder (``analysis.queries``) reads both tables.

``CLICKHOUSE_URL`` is ``http[s]://user:password@host:port/database`` for a server (through
``clickhouse-connect``), or ``chdb://<directory>`` (``chdb://`` alone: in memory) for ClickHouse's
engine in this process (tests, benchmarks, a single-process deployment). Both clients offer
the three calls the code uses: ``query(sql, parameters=...)``, ``command(sql, parameters=...)``
and ``raw_insert(table, column_names, insert_block, fmt=...)``.

Idempotency: both tables are ``ReplacingMergeTree``s. Events are keyed by ``event_id``, so a
retried batch or a redelivered stream entry is stored twice until a merge and read once
(``dialects.ClickHouse.source``: FINAL, merging across partitions). The version ``ver`` falls as
``received_at`` grows, so of two copies the one received first is read: Django's rule (the
first insert wins, ``ON CONFLICT DO NOTHING``), even when a retry carries another timestamp
(a server-assigned one, a month later) and its copy lands in another monthly partition. Exposures are keyed by (experiment, phase, unit) with the
version ``ver`` falling as ``first_seen`` grows, so the row kept is the earliest exposure:
PostgreSQL's upsert rule (first variant, first attributes) whatever order rows arrive in.
"""
from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import dialects

#: Upper bound of ``first_seen``/``received_at`` in microseconds (9999-12-31): ``ver`` stays positive.
_VER_BASE = 253402300800000000


def enabled() -> bool:
    """Whether events and exposures go to ClickHouse."""
    return getattr(settings, "ANALYTICS_BACKEND", "django") == "clickhouse"


def tables() -> tuple[str, str]:
    """(events, exposures) table names: Django's."""
    from assignment.models import Exposure

    from .models import Event

    return Event._meta.db_table, Exposure._meta.db_table


def ddl() -> list[str]:
    """CREATE TABLE statements (idempotent) with Django's table and column names.

    Events: monthly partitions on ``timestamp`` (old months can be dropped or moved), ordered by
    ``event_id`` (the deduplication key), the earliest received copy kept (``ver``). Copies of
    one event_id in different months are never merged on disk; reads dedupe them (FINAL).
    Exposures: not partitioned, because ``first_seen`` of a unit can still move back (an older
    exposure flushed late) and copies of one key must share a partition to be deduplicated.
    """
    events, exposures = tables()
    q = dialects.DIALECTS["clickhouse"].quote
    ts = "DateTime64(6, 'UTC')"
    return [
        f"CREATE TABLE IF NOT EXISTS {q(events)} ("
        f"{q('event_id')} String, {q('unit_id')} String, {q('event')} LowCardinality(String), "
        f"{q('value')} Nullable(Float64), {q('timestamp')} {ts}, {q('properties')} String DEFAULT '{{}}', "
        f"{q('received_at')} {ts} DEFAULT now64(6), "
        f"{q('ver')} UInt64 DEFAULT toUInt64({_VER_BASE} - toUnixTimestamp64Micro({q('received_at')}))"
        f") ENGINE = ReplacingMergeTree({q('ver')}) PARTITION BY toYYYYMM({q('timestamp')}) ORDER BY {q('event_id')}",
        f"CREATE TABLE IF NOT EXISTS {q(exposures)} ("
        f"{q('id')} Int64 DEFAULT 0, {q('experiment_id')} Int64, {q('variant_id')} Int64, {q('unit_id')} String, "
        f"{q('first_seen')} {ts}, {q('last_seen')} {ts} DEFAULT {q('first_seen')}, "
        f"{q('attributes')} String DEFAULT '{{}}', {q('phase')} UInt16 DEFAULT 1, "
        f"{q('ver')} UInt64 DEFAULT toUInt64({_VER_BASE} - toUnixTimestamp64Micro({q('first_seen')}))"
        f") ENGINE = ReplacingMergeTree({q('ver')}) "
        f"ORDER BY ({q('experiment_id')}, {q('phase')}, {q('unit_id')})",
    ]


# --- clients -----------------------------------------------------------------------------------


class _Result:
    def __init__(self, rows: list[tuple]) -> None:
        self.result_rows = rows


class ChdbClient:
    """ClickHouse in this process (chdb) behind the calls the code makes of a
    ``clickhouse_connect`` client. ``path``: a directory (kept across restarts) or None (memory).
    chdb binds ``%s`` parameters client-side, as ``clickhouse-connect`` does."""

    def __init__(self, path: str | None = None) -> None:
        from chdb import dbapi

        self.path = path
        self.conn = dbapi.connect(path) if path else dbapi.connect()

    def query(self, sql: str, parameters: Any = ()) -> _Result:
        cursor = self.conn.cursor()
        cursor.execute(sql, tuple(parameters) if parameters else None)
        return _Result([tuple(row) for row in (cursor.fetchall() or [])])

    def command(self, sql: str, parameters: Any = ()) -> None:
        self.conn.cursor().execute(sql, tuple(parameters) if parameters else None)

    def raw_insert(self, table: str, column_names: list[str] | None = None,
                   insert_block: str | bytes = b"", fmt: str = "JSONCompactEachRow") -> None:
        if isinstance(insert_block, bytes):
            insert_block = insert_block.decode("utf-8")
        q = dialects.DIALECTS["clickhouse"].quote
        cols = f" ({', '.join(q(c) for c in column_names)})" if column_names else ""
        # No parameters: the block is passed through untouched (no %-formatting).
        self.conn.cursor().execute(f"INSERT INTO {q(table)}{cols} FORMAT {fmt}\n{insert_block}")

    def close(self) -> None:
        self.conn.close()


@cache
def _client(url: str) -> Any:
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        path = (parts.netloc + parts.path) or None
        return ChdbClient(path)
    if parts.scheme not in ("http", "https"):
        raise ImproperlyConfigured("CLICKHOUSE_URL must start with http://, https:// or chdb://")
    import clickhouse_connect

    return clickhouse_connect.get_client(
        host=parts.hostname or "localhost", port=parts.port or (8443 if parts.scheme == "https" else 8123),
        username=parts.username or "default", password=parts.password or "",
        database=(parts.path or "/").strip("/") or "default", secure=parts.scheme == "https",
    )


def client() -> Any:
    """The configured client (one per process and URL)."""
    url = getattr(settings, "CLICKHOUSE_URL", "")
    if not url:
        raise ImproperlyConfigured(
            "ANALYTICS_BACKEND=clickhouse needs CLICKHOUSE_URL (http[s]://user:pass@host:8123/db or chdb://dir)")
    return _client(url)


def client_engine(ch: Any) -> dialects.Engine:
    """An engine over a client (``clickhouse_connect`` or :class:`ChdbClient`)."""

    def execute(d: dialects.Dialect, sql: str, params: list[Any]) -> list[tuple]:
        return [tuple(row) for row in ch.query(sql, parameters=tuple(params)).result_rows]

    return dialects.Engine(dialects.DIALECTS["clickhouse"], execute)


def settings_engine() -> dialects.Engine | None:
    """The configured analysis store: None for Django's database, else ClickHouse."""
    backend = getattr(settings, "ANALYTICS_BACKEND", "django")
    if backend in ("", "django"):
        return None
    if backend != "clickhouse":
        raise ImproperlyConfigured(f"ANALYTICS_BACKEND must be 'django' or 'clickhouse', not {backend!r}")
    return client_engine(client())


# --- writes ------------------------------------------------------------------------------------

EVENT_COLUMNS = ["event_id", "unit_id", "event", "value", "timestamp", "properties", "received_at"]
EXPOSURE_COLUMNS = ["experiment_id", "variant_id", "unit_id", "first_seen", "last_seen", "attributes", "phase"]


def insert_lines(table: str, columns: list[str], lines: list[str]) -> None:
    """Insert rows given as ``JSONCompactEachRow`` lines (the stream's format) in one INSERT."""
    if lines:
        client().raw_insert(table, columns, "\n".join(lines).encode("utf-8"), fmt="JSONCompactEachRow")


def erase_unit(unit_id: str) -> int:
    """Delete the unit's events and exposures (lightweight ``DELETE``: invisible at once, purged
    at the next merge); returns how many distinct events it had."""
    events, exposures = tables()
    q = dialects.DIALECTS["clickhouse"].quote
    ch = client()
    rows = ch.query(f"SELECT uniqExact({q('event_id')}) FROM {q(events)} WHERE {q('unit_id')} = %s",
                    parameters=(unit_id,)).result_rows
    for table in (events, exposures):
        ch.command(f"DELETE FROM {q(table)} WHERE {q('unit_id')} = %s", parameters=(unit_id,))
    return int(rows[0][0]) if rows else 0
