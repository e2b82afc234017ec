"""The stream loader: Redis Stream entries -> large ClickHouse inserts -> acknowledgement.

A consumer group (``loader``) shares the stream between loaders (Celery workers, or
``manage.py clickhouse_load``). One round:

1. claim entries another loader took but did not acknowledge within
   ``CLICKHOUSE_LOADER_CLAIM_SECONDS`` (it died, or ClickHouse refused its insert): ``XAUTOCLAIM``;
2. read new entries (``XREADGROUP``) until about ``CLICKHOUSE_LOAD_ROWS`` rows are gathered;
3. under the shared erasure lock (``assignment.erasure``), drop rows of units erased after the
   row's time (an erasure that ran while the entry waited), then insert the events and the
   exposures, each in one ``INSERT``;
4. only then ``XACK`` + ``XDEL`` the entries (one MULTI/EXEC).

A crash or a ClickHouse error anywhere before step 4 leaves the entries pending: they are
claimed again and inserted again, and ClickHouse's ``ReplacingMergeTree``s read the copies once
(``analysis.clickhouse``). So nothing acknowledged to a client is lost, and nothing counts twice.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from . import clickhouse, stream

logger = logging.getLogger(__name__)


@dataclass
class LoadResult:
    entries: int = 0
    events: int = 0
    exposures: int = 0
    dropped: int = 0  # rows of erased units
    rounds: int = 0

    def add(self, other: LoadResult) -> None:
        for name in ("entries", "events", "exposures", "dropped", "rounds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _rows_target() -> int:
    return max(1, int(getattr(settings, "CLICKHOUSE_LOAD_ROWS", 50_000)))


def _claim_ms() -> int:
    return max(0, int(float(getattr(settings, "CLICKHOUSE_LOADER_CLAIM_SECONDS", 60)) * 1000))


def ensure_group(client) -> None:
    import redis

    try:
        client.xgroup_create(stream.key(), stream.group(), id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


Entry = tuple[str, str, float, str]  # id, kind, earliest, data


def _entries(raw) -> tuple[list[Entry], list[str]]:
    """Decoded entries, and the ids of entries deleted meanwhile (nothing to load, ack them)."""
    out, gone = [], []
    for entry_id, fields in raw:
        entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        if not fields:
            gone.append(entry_id)
            continue
        out.append((entry_id, fields[b"k"].decode(), float(fields[b"t"]), fields[b"d"].decode("utf-8")))
    return out, gone


def _rows(entry: Entry) -> int:
    return entry[3].count("\n") + 1


def _gather(client, consumer: str, target: int) -> tuple[list[Entry], list[str]]:
    entries: list[Entry] = []
    gone: list[str] = []
    rows = 0
    cursor = "0-0"
    while rows < target:  # stale entries first (a dead loader's, or a failed insert's)
        reply = client.xautoclaim(stream.key(), stream.group(), consumer, min_idle_time=_claim_ms(),
                                  start_id=cursor, count=100)
        cursor = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        got, deleted = _entries(reply[1])
        gone += [d.decode() if isinstance(d, bytes) else d for d in (reply[2] if len(reply) > 2 else [])]
        gone += deleted
        entries += got
        rows += sum(_rows(e) for e in got)
        if cursor == "0-0":
            break
    while rows < target:
        reply = client.xreadgroup(stream.group(), consumer, {stream.key(): ">"}, count=100)
        if not reply:
            break
        got, deleted = _entries(reply[0][1])
        if not got and not deleted:
            break
        gone += deleted
        entries += got
        rows += sum(_rows(e) for e in got)
    return entries, gone


def _without_erased(entries: list[Entry]) -> tuple[dict[str, list[str]], int]:
    """Lines per kind, without rows of units erased at or after the row's time; dropped count.
    Call under the erasure lock."""
    from assignment import erasure

    lines: dict[str, list[str]] = {"events": [], "exposures": []}
    if not entries:
        return lines, 0
    since = min(e[2] for e in entries)
    from datetime import UTC, datetime

    from assignment.models import UnitTombstone

    if not UnitTombstone.objects.filter(erased_at__gte=datetime.fromtimestamp(since, UTC)).exists():
        for _, kind, _, data in entries:  # the usual case: no parsing at all
            lines[kind] += data.split("\n")
        return lines, 0
    parsed = [(kind, line, *stream.unit_of(kind, line)) for _, kind, _, data in entries for line in data.split("\n")]
    erased = erasure.erased_at({unit for _, _, unit, _ in parsed}, since=datetime.fromtimestamp(since, UTC))
    limits = {unit: when.timestamp() for unit, when in erased.items()}
    dropped = 0
    for kind, line, unit, when in parsed:
        if unit in limits and when <= limits[unit]:
            dropped += 1
        else:
            lines[kind].append(line)
    return lines, dropped


def load_once(*, consumer: str | None = None, rows: int | None = None) -> LoadResult:
    """One round: gather about ``rows`` rows, insert them, acknowledge their entries."""
    client = stream.redis_client()
    ensure_group(client)
    consumer = consumer or consumer_name()
    entries, gone = _gather(client, consumer, rows or _rows_target())
    result = LoadResult(entries=len(entries), rounds=1)
    if entries:
        events, exposures = clickhouse.tables()
        with transaction.atomic():  # the erasure lock is held until the rows are in ClickHouse
            from assignment import erasure

            erasure.lock_for_write()
            lines, result.dropped = _without_erased(entries)
            clickhouse.insert_lines(events, clickhouse.EVENT_COLUMNS, lines["events"])
            clickhouse.insert_lines(exposures, clickhouse.EXPOSURE_COLUMNS, lines["exposures"])
        result.events, result.exposures = len(lines["events"]), len(lines["exposures"])
    done = [e[0] for e in entries] + gone
    if done:
        pipe = client.pipeline(transaction=True)
        pipe.xack(stream.key(), stream.group(), *done)
        pipe.xdel(stream.key(), *done)
        pipe.execute()
    return result


def load(*, max_seconds: float = 50.0, consumer: str | None = None, rows: int | None = None) -> LoadResult:
    """Rounds until the stream has nothing more for this consumer (or ``max_seconds`` passed)."""
    total = LoadResult()
    deadline = time.monotonic() + max_seconds
    while True:
        result = load_once(consumer=consumer, rows=rows)
        total.add(result)
        if result.entries == 0 or time.monotonic() >= deadline:
            break
    if total.entries:
        logger.info("loaded %d events and %d exposures into ClickHouse from %d stream entries (%d dropped: erased)",
                    total.events, total.exposures, total.entries, total.dropped)
    return total
