"""The durable Redis Stream between the event endpoint and ClickHouse.

Each accepted batch of events (and each mirrored batch of exposures) is one stream entry:
``k`` the kind (``events`` | ``exposures``), ``t`` the earliest timestamp of its rows (epoch
seconds: the loader's tombstone check needs no parsing when no unit was erased since), ``d``
the rows as ``JSONCompactEachRow`` lines, the format the loader hands to ClickHouse untouched.
The endpoint answers once ``XADD`` has returned, so what it acknowledged is in Redis (durable
across a Redis restart with ``appendonly yes``, see docs/scaling.md); the loader
(``analysis.loader``) acknowledges and deletes entries only after ClickHouse has them.

The stream is bounded: a Lua script compares ``XLEN`` with ``CLICKHOUSE_STREAM_MAX_ENTRIES``
and appends in one atomic step, so concurrent writers cannot overshoot; a full stream
(ClickHouse down for long) raises :class:`StreamFull`, which the endpoint answers with 503 and
``Retry-After``. Nothing is dropped silently.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

_dumps = json.JSONEncoder(separators=(",", ":")).encode

_BOUNDED_XADD = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', 'k', ARGV[2], 't', ARGV[3], 'd', ARGV[4])
"""


class StreamError(Exception):
    """The stream cannot take or give the data now (the API answers 503)."""

    retry_after = 5


class StreamFull(StreamError):
    """The stream holds ``CLICKHOUSE_STREAM_MAX_ENTRIES`` entries: the loader is behind."""


class StreamUnavailable(StreamError):
    """Redis is unreachable."""


def key() -> str:
    return str(getattr(settings, "CLICKHOUSE_STREAM_KEY", "abp:clickhouse:stream"))


def group() -> str:
    return "loader"


def max_entries() -> int:
    return max(1, int(getattr(settings, "CLICKHOUSE_STREAM_MAX_ENTRIES", 20_000)))


_clients: dict[str, Any] = {}
_scripts: dict[int, Any] = {}


def redis_client() -> Any:
    """A Redis client on ``REDIS_URL`` (the stream needs one: ANALYTICS_BACKEND=clickhouse is the
    production mode)."""
    url = getattr(settings, "REDIS_URL", None)
    if not url:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("ANALYTICS_BACKEND=clickhouse needs REDIS_URL (the event stream)")
    client = _clients.get(url)
    if client is None:
        import redis

        client = _clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    return client


_ZERO = timedelta(0)


def _ts(value: datetime) -> str:
    """``YYYY-MM-DD hh:mm:ss.ffffff`` in UTC (isoformat is C code: 5x faster than strftime)."""
    if value.utcoffset() != _ZERO:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def event_lines(rows: Iterable[Sequence[Any]], received_at: datetime) -> list[str]:
    """Validated ingestion rows (``analysis.ingestion.Row``) as ``JSONCompactEachRow`` lines in
    ``clickhouse.EVENT_COLUMNS`` order."""
    received = _ts(received_at)
    return [_dumps([eid, unit, name, value, _ts(ts), props, received])
            for eid, unit, name, value, ts, props in rows]


def exposure_lines(rows: Iterable[Sequence[Any]]) -> list[str]:
    """Collapsed exposure rows ``(exp, variant, unit, first, attrs, last, phase)`` (epoch
    seconds, attributes a dict) as lines in ``clickhouse.EXPOSURE_COLUMNS`` order."""
    out = []
    for exp, variant, unit, first, attrs, last, phase in rows:
        out.append(_dumps([exp, variant, unit, _ts(datetime.fromtimestamp(first, UTC)),
                           _ts(datetime.fromtimestamp(last, UTC)), _dumps(attrs or {}), phase]))
    return out


def append(kind: str, lines: list[str], earliest: float) -> str | None:
    """Append one entry (bounded); returns its id, None when there is nothing to append."""
    if not lines:
        return None
    import redis

    client = redis_client()
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(_BOUNDED_XADD)
    try:
        entry = script(keys=[key()], args=[max_entries(), kind, repr(float(earliest)), "\n".join(lines)])
    except redis.RedisError as exc:
        raise StreamUnavailable(f"the event stream is unreachable ({type(exc).__name__})") from exc
    if entry is None:
        raise StreamFull(f"the event stream is full ({max_entries()} batches wait for ClickHouse)")
    return entry.decode() if isinstance(entry, bytes) else entry


def append_events(rows: Sequence[Sequence[Any]], received_at: datetime) -> int:
    """Append a validated batch as one entry; returns how many events it holds."""
    if not rows:
        return 0
    append("events", event_lines(rows, received_at), min(row[4] for row in rows).timestamp())
    return len(rows)


def append_exposures(rows: Sequence[Sequence[Any]]) -> int:
    """Append collapsed exposure rows as one entry (the mirror); returns how many."""
    if not rows:
        return 0
    append("exposures", exposure_lines(rows), min(row[3] for row in rows))
    return len(rows)


def unit_of(kind: str, line: str) -> tuple[str, float]:
    """(unit id, time in epoch seconds) of one line: the tombstone check's inputs."""
    row = json.loads(line)
    stamp = row[4] if kind == "events" else row[3]
    return row[1] if kind == "events" else row[2], _epoch(stamp)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def purge_unit(unit_id: str) -> int:
    """Remove the unit's rows from every entry still in the stream (delivered or not); returns
    how many events were removed.

    An entry holding the unit is replaced by a new entry without its rows (one MULTI/EXEC:
    ``XADD`` the rest, ``XDEL`` the old one). A loader that already read the old entry drops the
    unit's rows by the tombstone, and reloads of the replacement are deduplicated by key.
    """
    import redis

    client = redis_client()
    needle = _dumps(unit_id)
    removed = 0
    start = "-"
    try:
        while True:
            batch = client.xrange(key(), min=start, max="+", count=500)
            for entry_id, fields in batch:
                data = fields.get(b"d", b"").decode("utf-8")
                if needle not in data:
                    continue
                kind = fields.get(b"k", b"events").decode()
                kept, earliest = [], None
                for line in data.split("\n"):
                    unit, when = unit_of(kind, line)
                    if unit == unit_id:
                        removed += kind == "events"
                        continue
                    kept.append(line)
                    earliest = when if earliest is None else min(earliest, when)
                pipe = client.pipeline(transaction=True)
                if kept:
                    pipe.xadd(key(), {"k": kind, "t": repr(earliest), "d": "\n".join(kept)})
                pipe.xdel(key(), entry_id)
                pipe.execute()
            if len(batch) < 500:
                return removed
            last = batch[-1][0].decode()
            start = "(" + last
    except redis.RedisError as exc:
        raise StreamUnavailable(f"the event stream is unreachable ({type(exc).__name__})") from exc


def pending() -> int:
    """Entries in the stream (not yet loaded)."""
    return int(redis_client().xlen(key()))
