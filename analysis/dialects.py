"""What differs between the SQL engines the aggregation builder (``analysis.queries``) targets.

One builder writes every query; a ``Dialect`` supplies only the fragments engines spell
differently (interval shifts, filtered aggregates, LEAST, types, timestamp parameters, JSON
attribute extraction, day truncation, CTE materialisation hints). There is no per-engine copy
of a query and no SQL translation at run time: placeholders are ``%s`` (DB-API "format"
style) for every engine, bound by the driver (Django's SQLite backend and DuckDB's adapter turn
them into ``?`` the same way).

Engines: SQLite and PostgreSQL (through Django's connection), ClickHouse (``clickhouse-connect``
for a server, ``chdb`` in-process for tests and benchmarks) and DuckDB (tests only: a fourth
opinion in the cross-engine equality test).

An ``Engine`` (a dialect plus an ``execute(dialect, sql, params) -> rows`` function) is the
execution seam: ``with using(engine): queries.metric_statistics(...)`` runs the same builder
against another store (see ``analysis.engines`` for the DuckDB/chdb adapters).
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: A decimal number as text, as targeting reads it (``experiments.operands.DECIMAL``), bounded to
#: 100 integer digits, 100 decimals and a two-digit exponent so no engine's cast can overflow
#: (PostgreSQL raises on out-of-range doubles); longer numeric strings are not numbers in SQL.
DECIMAL_PATTERN = r"^-?(0|[1-9][0-9]{0,99})(\.[0-9]{1,100})?([eE][+-]?[0-9]{1,2})?$"


class Dialect:
    """Base: standard SQL as PostgreSQL spells it. Subclasses override what differs."""

    name = "standard"
    float_type = "DOUBLE PRECISION"
    text_type = "TEXT"
    least = "LEAST"
    #: CTE hints: the exposure CTE (read once per event row) and CTEs read twice (v, c).
    materialize_exposures = False
    materialize_reused = True
    #: Per-metric pilot means as window aggregates over the per-unit values (``AVG(y) OVER ()``)
    #: instead of a second CTE joined back: for engines that inline CTEs (the per-unit join
    #: would run twice).
    window_pilots = False
    #: The exposures on the right of the event join (the hash join's build side, the smaller
    #: input) for engines that build the hash table from the right side as written.
    exposures_on_the_right = False

    def quote(self, name: str) -> str:
        """Identifier quoting (Django's for SQLite/PostgreSQL; ClickHouse and DuckDB accept it)."""
        return '"' + name.replace('"', '""') + '"'

    def source(self, table: str, alias: str = "") -> str:
        """A table in FROM/JOIN (with its alias): where the engine deduplicates on read."""
        return " ".join(part for part in (table, alias) if part)

    def shift(self, column: str, hours: int) -> tuple[str, list[Any]]:
        """``column + hours`` (negative: minus) comparable with stored timestamps."""
        return f"({column} + %s * INTERVAL '1 hour')", [int(hours)]

    def filtered(self, function: str, argument: str, condition: str) -> str:
        """``function(argument)`` over the rows matching ``condition`` (``*`` for COUNT(*))."""
        return f"{function}({argument}) FILTER (WHERE {condition})"

    def cast_float(self, expression: str) -> str:
        """A non-null expression as a double (callers COALESCE first: a nullable CAST fails on
        ClickHouse)."""
        return f"CAST({expression} AS {self.float_type})"

    def day(self, column: str) -> str:
        """The UTC calendar day of a timestamp column."""
        return f"CAST(({column} AT TIME ZONE 'UTC') AS DATE)"

    def json_text(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        """An attribute of a JSON object column as text (booleans ``true``/``false``; missing or
        JSON null: SQL NULL). ``attribute`` is a parameter, already validated by the caller."""
        return f"{column} ->> CAST(%s AS {self.text_type})", [attribute]

    def cte(self, role: str) -> str:
        """``MATERIALIZED `` where the engine takes (and needs) the hint, else nothing."""
        wanted = self.materialize_exposures if role == "exposures" else self.materialize_reused
        return "MATERIALIZED " if wanted else ""

    def timestamp(self, value: datetime) -> Any:
        """A timestamp parameter (aware UTC datetime) as the driver should get it."""
        return value

    def parse_timestamp(self, value: Any) -> datetime | None:
        """A timestamp read back (datetime, naive = UTC, or text) as an aware datetime."""
        if value is None:
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(str(value))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    # --- audience conditions (analysis.segments): typed JSON attributes and substring ---------

    def json_string(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        """The attribute as text only when it is a JSON string (else SQL NULL)."""
        return (f"CASE WHEN jsonb_typeof(CAST({column} AS JSONB) -> CAST(%s AS TEXT)) = 'string' "
                f"THEN {column} ->> CAST(%s AS TEXT) END"), [attribute, attribute]

    def json_number(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        """The attribute as a double when it is a JSON number or a decimal string (as targeting
        reads it, ``experiments.operands.as_number``); else SQL NULL (booleans included)."""
        text = f"({column} ->> CAST(%s AS TEXT))"
        kind = f"jsonb_typeof(CAST({column} AS JSONB) -> CAST(%s AS TEXT))"
        sql = (f"CASE WHEN {kind} = 'number' OR ({kind} = 'string' AND {text} ~ %s) "
               f"THEN CAST({text} AS {self.float_type}) END")
        return sql, [attribute, attribute, attribute, DECIMAL_PATTERN, attribute]

    def contains(self, haystack: str, needle: str) -> str:
        """``needle`` (an SQL expression) occurs in ``haystack`` (case-sensitive)."""
        return f"strpos({haystack}, {needle}) > 0"

    def __repr__(self) -> str:
        return f"<Dialect {self.name}>"


class PostgreSQL(Dialect):
    name = "postgresql"


class SQLite(Dialect):
    name = "sqlite"
    least = "MIN"  # scalar MIN(a, b)
    materialize_exposures = True

    def shift(self, column: str, hours: int) -> tuple[str, list[Any]]:
        # SQLite stores datetimes as Django-formatted text, so shift in Python (once per exposure
        # row) and return the same format: text comparison is then exact to the microsecond.
        return f"abp_shift_hours({column}, %s)", [int(hours)]

    def day(self, column: str) -> str:
        return f"substr({column}, 1, 10)"

    def json_text(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        path = f'$."{attribute}"'  # safe: the caller validated the name (no quotes)
        sql = (
            f"CASE json_type({column}, %s) WHEN 'true' THEN 'true' "
            f"WHEN 'false' THEN 'false' WHEN 'null' THEN NULL "
            f"ELSE CAST(json_extract({column}, %s) AS TEXT) END"
        )
        return sql, [path, path]

    def timestamp(self, value: datetime) -> Any:
        from django.db import connection  # the text format Django stores

        return connection.ops.adapt_datetimefield_value(value)

    # --- audience conditions (analysis.segments) ----------------------------------------------

    def json_string(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        path = f'$."{attribute}"'  # safe: the caller validated the name (no quotes)
        return f"CASE WHEN json_type({column}, %s) = 'text' THEN json_extract({column}, %s) END", [path, path]

    def json_number(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        path = f'$."{attribute}"'
        sql = (f"CASE json_type({column}, %s) WHEN 'integer' THEN CAST(json_extract({column}, %s) AS REAL) "
               f"WHEN 'real' THEN json_extract({column}, %s) "
               f"WHEN 'text' THEN abp_number(json_extract({column}, %s)) END")
        return sql, [path] * 4

    def contains(self, haystack: str, needle: str) -> str:
        return f"instr({haystack}, {needle}) > 0"


def sqlite_number(value: Any) -> float | None:
    """``abp_number``: a decimal string as a finite float (else None), for ``SQLite.json_number``."""
    if not isinstance(value, str) or not re.fullmatch(DECIMAL_PATTERN, value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def sqlite_shift_hours(value: str | None, hours: int) -> str | None:
    """``abp_shift_hours``: the SQLite function behind ``SQLite.shift``."""
    if value is None:
        return None
    try:
        return str(datetime.fromisoformat(value) + timedelta(hours=hours))
    except (ValueError, OverflowError):
        return None


class ClickHouse(Dialect):
    """ClickHouse (server or chdb). Timestamps are ``DateTime64(6, 'UTC')``; attributes a JSON
    ``String``."""

    name = "clickhouse"
    float_type = "Float64"
    text_type = "String"
    least = "least"
    materialize_reused = False  # CTEs are inlined; no hint
    # ClickHouse inlines CTEs: a pilot CTE read from v would evaluate the event join twice.
    window_pilots = True
    exposures_on_the_right = True
    # No ``do_not_merge_across_partitions_select_final``: copies of an event_id sent with
    # timestamps in different months sit in different partitions, and only a FINAL that merges
    # across partitions reads them once (about 0.5 s more at 10M events, docs/scaling.md).

    def source(self, table: str, alias: str = "") -> str:
        # ReplacingMergeTree keeps a retried insert until a background merge (and copies in
        # different partitions for good): FINAL reads each sorting key (event_id) once, the
        # earliest received, so a redelivered batch never counts twice.
        return " ".join(part for part in (table, alias, "FINAL") if part)

    def shift(self, column: str, hours: int) -> tuple[str, list[Any]]:
        # ClickHouse rejects ``n * INTERVAL``: the count must be a literal (an int: safe).
        return f"({column} + INTERVAL {int(hours)} HOUR)", []

    def filtered(self, function: str, argument: str, condition: str) -> str:
        # The -If combinators are native (FILTER is accepted too and rewritten to them).
        if argument == "*":
            return f"{function.lower()}If({condition})"
        return f"{function.lower()}If({argument}, {condition})"

    def day(self, column: str) -> str:
        return f"toDate({column}, 'UTC')"

    def json_text(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        sql = (
            f"multiIf(JSONType({column}, %s) = 'String', JSONExtractString({column}, %s), "
            f"JSONType({column}, %s) = 'Null', NULL, JSONExtractRaw({column}, %s))"
        )
        return sql, [attribute] * 4

    def timestamp(self, value: datetime) -> Any:
        # Compared with a DateTime64(6, 'UTC') column, the text is read in UTC to the microsecond.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    # --- audience conditions (analysis.segments) ----------------------------------------------

    def json_string(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        return f"if(JSONType({column}, %s) = 'String', JSONExtractString({column}, %s), NULL)", [attribute] * 2

    def json_number(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        sql = (f"multiIf(JSONType({column}, %s) IN ('Int64', 'UInt64', 'Double'), JSONExtractFloat({column}, %s), "
               f"JSONType({column}, %s) = 'String' AND match(JSONExtractString({column}, %s), %s), "
               f"toFloat64OrNull(JSONExtractString({column}, %s)), NULL)")
        return sql, [attribute, attribute, attribute, attribute, DECIMAL_PATTERN, attribute]

    def contains(self, haystack: str, needle: str) -> str:
        return f"position({haystack}, {needle}) > 0"


class DuckDB(Dialect):
    """DuckDB (tests only). Timestamps are naive UTC ``TIMESTAMP``; attributes JSON text."""

    name = "duckdb"

    def shift(self, column: str, hours: int) -> tuple[str, list[Any]]:
        return f"({column} + INTERVAL '{int(hours)} hours')", []

    def day(self, column: str) -> str:
        return f"CAST({column} AS DATE)"

    def json_text(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        return f"json_extract_string({column}, %s)", [f'$."{attribute}"']

    def timestamp(self, value: datetime) -> Any:
        return value.astimezone(UTC).replace(tzinfo=None)

    # --- audience conditions (analysis.segments) ----------------------------------------------

    def json_string(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        path = f'$."{attribute}"'
        return (f"CASE WHEN json_type({column}, %s) = 'VARCHAR' THEN json_extract_string({column}, %s) END",
                [path, path])

    def json_number(self, column: str, attribute: str) -> tuple[str, list[Any]]:
        path = f'$."{attribute}"'
        kind = f"json_type({column}, %s)"
        text = f"json_extract_string({column}, %s)"
        sql = (f"CASE WHEN {kind} IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN TRY_CAST({text} AS DOUBLE) "
               f"WHEN {kind} = 'VARCHAR' AND regexp_full_match({text}, %s) THEN TRY_CAST({text} AS DOUBLE) END")
        return sql, [path, path, path, path, DECIMAL_PATTERN[1:-1], path]


DIALECTS: dict[str, Dialect] = {d.name: d for d in (PostgreSQL(), SQLite(), ClickHouse(), DuckDB())}


def for_vendor(vendor: str) -> Dialect:
    """The dialect of a Django connection vendor (``connection.vendor``)."""
    try:
        return DIALECTS[vendor]
    except KeyError:
        raise ValueError(f"no SQL dialect for database vendor {vendor!r}") from None


Execute = Callable[[Dialect, str, list[Any]], list[tuple]]


@dataclass(frozen=True)
class Engine:
    """A store the builder can run against: its dialect and how to run one query."""

    dialect: Dialect
    execute: Execute


_current: ContextVar[Engine | None] = ContextVar("analysis_engine", default=None)


def current_engine() -> Engine | None:
    """The engine set by ``using`` (None: Django's default connection)."""
    return _current.get()


@contextmanager
def using(engine: Engine) -> Iterator[Engine]:
    """Run the query builder against ``engine`` inside the block."""
    token = _current.set(engine)
    try:
        yield engine
    finally:
        _current.reset(token)
