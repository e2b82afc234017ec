"""In-process engines for the aggregation builder: DuckDB (tests) and ClickHouse through chdb.

Each adapter creates the two tables the builder reads (events and exposures, with Django's
table and column names), loads rows into them and returns a ``dialects.Engine``; then
``with dialects.using(engine): queries.metric_statistics(experiment)`` runs the very SQL the
builder writes for that dialect. Both packages are optional (``pip install .[clickhouse]`` for
chdb, the ``dev`` extra for DuckDB) and imported only here, on use.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from assignment.models import Exposure

from . import dialects
from .models import Event

#: Columns loaded (the builder reads no others), in insert order.
EVENT_FIELDS = ("event_id", "unit_id", "event", "value", "timestamp")
#: What ``clickhouse_init --copy`` copies of an event (``received_at`` too: of two copies of an
#: event_id, ClickHouse keeps the one received first, as Django's table did).
COPY_EVENT_FIELDS = (*EVENT_FIELDS, "properties", "received_at")
EXPOSURE_FIELDS = ("id", "experiment", "variant", "unit_id", "first_seen", "attributes", "phase")

_TYPES = {
    "duckdb": {
        "event_id": "VARCHAR", "unit_id": "VARCHAR", "event": "VARCHAR", "value": "DOUBLE",
        "timestamp": "TIMESTAMP", "id": "BIGINT", "experiment": "BIGINT", "variant": "BIGINT",
        "first_seen": "TIMESTAMP", "attributes": "VARCHAR", "phase": "INTEGER",
    },
    "clickhouse": {
        "event_id": "String", "unit_id": "String", "event": "LowCardinality(String)",
        "value": "Nullable(Float64)", "timestamp": "DateTime64(6, 'UTC')", "id": "Int64",
        "experiment": "Int64", "variant": "Int64", "first_seen": "DateTime64(6, 'UTC')",
        "attributes": "String", "phase": "UInt16",
    },
}


def _columns(model, fields: Iterable[str]) -> list[str]:
    return [model._meta.get_field(f).column for f in fields]


def create_table_sql(dialect: dialects.Dialect, model, fields: Iterable[str], *, order_by: str) -> str:
    """DDL for one of the builder's tables (ClickHouse: a ReplacingMergeTree keyed as given)."""
    fields = list(fields)
    types = _TYPES[dialect.name]
    cols = ", ".join(f"{dialect.quote(c)} {types[f]}" for f, c in zip(fields, _columns(model, fields), strict=True))
    table = dialect.quote(model._meta.db_table)
    if dialect.name == "clickhouse":
        return (f"CREATE TABLE {table} ({cols}) ENGINE = ReplacingMergeTree "
                f"ORDER BY {dialect.quote(order_by)}")
    return f"CREATE TABLE {table} ({cols})"


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _row(dialect: dialects.Dialect, obj, fields: Iterable[str]) -> tuple:
    out: list[Any] = []
    for f in fields:
        field = obj._meta.get_field(f)
        value = getattr(obj, field.attname)
        if isinstance(value, datetime):
            value = dialect.timestamp(value) if dialect.name == "clickhouse" else _naive_utc(value)
        elif f in ("attributes", "properties"):
            value = json.dumps(value or {})
        out.append(value)
    return tuple(out)


def _insert_sql(dialect: dialects.Dialect, model, fields: list[str], marker: str) -> str:
    cols = ", ".join(dialect.quote(c) for c in _columns(model, fields))
    return (f"INSERT INTO {dialect.quote(model._meta.db_table)} ({cols}) "
            f"VALUES ({', '.join([marker] * len(fields))})")


def _load(cursor, dialect, marker, events, exposures) -> None:
    for model, fields, rows, key in (
        (Event, EVENT_FIELDS, events, "event_id"), (Exposure, EXPOSURE_FIELDS, exposures, "id"),
    ):
        cursor.execute(f"DROP TABLE IF EXISTS {dialect.quote(model._meta.db_table)}")
        if dialect.name == "clickhouse":  # the production DDL (analysis.clickhouse)
            from .clickhouse import ddl

            cursor.execute(ddl()[0 if model is Event else 1])
        else:
            cursor.execute(create_table_sql(dialect, model, fields, order_by=key))
        data = [_row(dialect, obj, fields) for obj in rows]
        if data:
            cursor.executemany(_insert_sql(dialect, model, list(fields), marker), data)


def duckdb_engine(events: Iterable[Event], exposures: Iterable[Exposure]) -> dialects.Engine:
    """A fresh in-memory DuckDB holding the given rows."""
    import duckdb

    conn = duckdb.connect(":memory:")
    dialect = dialects.DIALECTS["duckdb"]
    _load(conn, dialect, "?", events, exposures)

    def execute(d: dialects.Dialect, sql: str, params: list[Any]) -> list[tuple]:
        # DB-API "format" placeholders bound as DuckDB's "qmark" (as Django's SQLite backend does).
        return conn.execute(sql.replace("%s", "?"), params).fetchall()

    return dialects.Engine(dialect, execute)


def chdb_engine(events: Iterable[Event], exposures: Iterable[Exposure]) -> dialects.Engine:
    """ClickHouse in-process (chdb) holding the given rows; chdb's DB-API binds ``%s``."""
    from chdb import dbapi

    conn = dbapi.connect()
    _load(conn.cursor(), dialects.DIALECTS["clickhouse"], "%s", events, exposures)
    return chdb_connection_engine(conn)


def chdb_connection_engine(conn: Any) -> dialects.Engine:
    """An engine over an open chdb DB-API connection (tables already there)."""
    dialect = dialects.DIALECTS["clickhouse"]

    def execute(d: dialects.Dialect, sql: str, params: list[Any]) -> list[tuple]:
        cur = conn.cursor()
        cur.execute(sql, tuple(params))
        return list(cur.fetchall())

    return dialects.Engine(dialect, execute)


def _load_rows(engine: dialects.Engine, events: Iterable[Event], exposures: Iterable[Exposure], *,
               batch: int = 10_000, event_fields: Iterable[str] = EVENT_FIELDS) -> None:
    """Insert rows into an engine's existing tables (ClickHouse: ``clickhouse_init``'s), one
    INSERT per ``batch`` rows, never holding more than one batch."""
    dialect = engine.dialect
    for model, fields, rows in ((Event, tuple(event_fields), events), (Exposure, EXPOSURE_FIELDS, exposures)):
        head, values = _insert_sql(dialect, model, list(fields), "%s").split(" VALUES ")

        def insert(chunk: list[tuple], head: str = head, values: str = values) -> None:
            engine.execute(dialect, f"{head} VALUES {', '.join([values] * len(chunk))}",
                           [v for row in chunk for v in row])

        chunk: list[tuple] = []
        for obj in rows:
            chunk.append(_row(dialect, obj, fields))
            if len(chunk) >= batch:
                insert(chunk)
                chunk = []
        if chunk:
            insert(chunk)


def from_django(factory) -> dialects.Engine:
    """Copy every event and exposure row of Django's database into a new engine."""
    return factory(Event.objects.all().iterator(), Exposure.objects.all().iterator())
