"""Exposure buffering: the hot path appends, a task writes rows in bulk.

Production (``settings.REDIS_URL`` set): exposures are ``RPUSH``-ed to one shared Redis list,
batched per process for at most ``ASSIGNMENT_REDIS_BATCH_SECONDS`` (50 ms; 0 pushes on every
answer), one list element per batch (a JSON array of items; elements holding one item, as
queued before batches, are still read), and ``flush`` drains the list. Draining is at-least-once and the write is idempotent:

1. the queue is claimed whole with an atomic ``RENAME`` to a processing list whose name is
   registered (with a timestamp) in a sorted set *before* the rename;
2. the processing list is read in chunks and upserted (``upsert``) inside a transaction;
3. the processing list is deleted only after the commit.

A flusher that dies between 1 and 3 leaves its processing list behind; any later flush claims
lists older than ``ASSIGNMENT_EXPOSURE_LEASE_SECONDS`` (again with ``RENAME``, so only one
flusher wins) and processes them. Replaying a list is harmless because the upsert keeps the
minimum ``first_seen`` and the maximum ``last_seen``.

When Redis cannot be reached at push time, exposures go to an in-process buffer (the answer
reports ``degraded``) and Redis is not retried for ``ASSIGNMENT_REDIS_RETRY_SECONDS``. The same
bounded buffer is the only one in the embedded mode (no Redis). It is written to the database
when it holds ``ASSIGNMENT_EXPOSURE_BUFFER_SIZE`` items or its oldest item is
``ASSIGNMENT_EXPOSURE_BUFFER_SECONDS`` old, by ``flush`` (the periodic task) and at exit (also
on SIGTERM where nobody else handles it: ``install_sigterm_flush``).

Every path writes through :func:`write`: a poison item (one the database refuses) is repaired
or set aside in ``RejectedExposure`` and never blocks the others; and :func:`upsert` drops
items of erased units from before their erasure (``assignment.erasure``), in the write's
transaction. docs/operations.md describes both.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction

logger = logging.getLogger(__name__)

DEGRADED_LOCAL_BUFFER = "exposures-local-buffer"

# (experiment id, variant id, unit id, unix time, attributes, phase); read fields by these
# positions. Items without the phase (queued before phases existed) are phase 1.
Item = tuple[int, int, str, float, dict, int] | tuple[int, int, str, float, dict]
EXP, VARIANT, UNIT, TS, ATTRS, PHASE = range(6)
MAX_PHASE = 32767  # Exposure.phase


def _setting(name: str, default):
    return getattr(settings, name, default)


# --- in-process buffer ---------------------------------------------------------------------------

class LocalBuffer:
    """A bounded FIFO; past ``ASSIGNMENT_EXPOSURE_BUFFER_MAX`` items the oldest are dropped."""

    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._lock = threading.Lock()
        self.oldest_at = 0.0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def extend(self, items: Sequence[Item]) -> None:
        limit = _setting("ASSIGNMENT_EXPOSURE_BUFFER_MAX", 100_000)
        with self._lock:
            if not self._items:
                self.oldest_at = time.monotonic()
            self._items.extend(items)
            overflow = len(self._items) - limit
            if overflow > 0:
                for _ in range(overflow):
                    self._items.popleft()
                self.dropped += overflow
                logger.error("exposure buffer full: dropped %d exposures", overflow)

    def due(self) -> bool:
        if not self._items:
            return False
        return (
            len(self._items) >= _setting("ASSIGNMENT_EXPOSURE_BUFFER_SIZE", 500)
            or time.monotonic() - self.oldest_at >= _setting("ASSIGNMENT_EXPOSURE_BUFFER_SECONDS", 5.0)
        )

    def take(self) -> list[Item]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def put_back(self, items: list[Item]) -> None:
        with self._lock:
            self._items.extendleft(reversed(items))
            self.oldest_at = time.monotonic()

    def discard_unit(self, unit_id: str) -> int:
        with self._lock:
            kept = [item for item in self._items if item[UNIT] != unit_id]
            removed = len(self._items) - len(kept)
            self._items = deque(kept)
            return removed


local_buffer = LocalBuffer()


# --- Redis ------------------------------------------------------------------------------------

_clients: dict[str, object] = {}
_redis_down_until = 0.0


def redis_client():
    url = _setting("REDIS_URL", None)
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        import redis

        timeout = _setting("ASSIGNMENT_REDIS_TIMEOUT", 0.5)
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        _clients[url] = client
    return client


def _keys() -> tuple[str, str, str]:
    prefix = _setting("ASSIGNMENT_REDIS_PREFIX", "{assignment}")
    return f"{prefix}:exposures", f"{prefix}:exposures:processing", f"{prefix}:exposures:processing:"


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_dumps_ascii = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=repr).encode


def _encode(item: Item) -> str:
    return _dumps(item)


def _encode_all(items: Sequence[Item]) -> list[str]:
    """Encode a batch; exposures of one request share unit, time and attributes, so those
    parts are encoded once."""
    out, shared = [], {}
    for exp_id, variant_id, unit_id, ts, attributes, *phase in items:
        key = (unit_id, ts, id(attributes))
        tail = shared.get(key)
        if tail is None:
            tail = f"{_dumps(unit_id)},{_dumps(ts)},{_dumps(attributes)}"
            if not tail.isascii():
                try:
                    tail.encode()
                except UnicodeEncodeError:  # lone surrogates: escaped, so the push cannot fail
                    tail = f"{_dumps_ascii(unit_id)},{_dumps(ts)},{_dumps_ascii(attributes)}"
            shared[key] = tail
        out.append(f"[{exp_id},{variant_id},{tail},{_dumps(phase[0]) if phase else 1}]")
    return out


def _encode_batch(items: Sequence[Item]) -> str:
    """One queue element for a whole batch: a JSON array of items (``[[...],[...]]``). One
    element per push, not one per exposure, is less work for the web worker and for Redis."""
    return f"[{','.join(_encode_all(items))}]"


def _item(value) -> Item | None:
    try:
        exp, var, unit, ts, attrs, *phase = value
        return (int(exp), int(var), str(unit), float(ts), attrs if isinstance(attrs, dict) else {},
                int(phase[0]) if phase else 1)
    except (ValueError, TypeError):
        return None  # set aside by the caller (logs carry no unit id, so not the message)


def _decode(raw: bytes) -> Item | None:
    """One item queued one per element (before batches; also what older processes push)."""
    try:
        return _item(json.loads(raw))
    except (ValueError, TypeError):
        return None


def _decode_message(raw: bytes) -> tuple[list[Item], list[tuple[object, str]]]:
    """-> (items, malformed) of one queue element: a batch (:func:`_encode_batch`) or, as
    queued before an upgrade, a single item. A malformed item of a batch is set aside alone."""
    try:
        value = json.loads(raw)
    except (ValueError, TypeError):
        return [], [(raw, "malformed queue message")]
    if not (isinstance(value, list) and value and all(isinstance(v, list) for v in value)):
        item = _item(value)
        return ([item], []) if item is not None else ([], [(raw, "malformed queue message")])
    items, malformed = [], []
    for sub in value:
        item = _item(sub)
        if item is None:
            malformed.append((tuple(sub), "malformed queue message"))  # unit hashed for erasure
        else:
            items.append(item)
    return items, malformed


# --- hot path -----------------------------------------------------------------------------------

class Outbox:
    """Exposures waiting at most ``ASSIGNMENT_REDIS_BATCH_SECONDS`` to share one ``RPUSH``.

    One round trip to Redis per request would cost a sync worker more than the assignment
    itself; a short window batches them. A daemon thread pushes what a quiet process holds.
    """

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.first_at = 0.0
        self.lock = threading.Lock()
        self.thread_pid: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    def add(self, items: Sequence[Item], size: int, seconds: float) -> bool:
        """Append; True when the batch is due (the caller then drains it)."""
        now = time.monotonic()
        with self.lock:
            if not self.items:
                self.first_at = now
            self.items.extend(items)
            return len(self.items) >= size or now - self.first_at >= seconds

    def take(self, older_than: float = 0.0) -> list[Item]:
        with self.lock:
            if not self.items or time.monotonic() - self.first_at < older_than:
                return []
            taken, self.items = self.items, []
            return taken

    def discard_unit(self, unit_id: str) -> int:
        with self.lock:
            kept = [item for item in self.items if item[UNIT] != unit_id]
            removed = len(self.items) - len(kept)
            self.items = kept
            return removed


outbox = Outbox()
# Held from taking a batch until it is in Redis (or the in-process buffer): a flush that drains
# the outbox therefore also waits for a push in flight, and never misses its items.
_push_lock = threading.Lock()


def _push(client, items: list[Item]) -> bool:
    """RPUSH ``items`` (and any fallback leftovers); on failure keep them in process."""
    global _redis_down_until
    leftovers = local_buffer.take() if len(local_buffer) else []
    try:
        client.rpush(_keys()[0], _encode_batch([*leftovers, *items]))
        return True
    except Exception:
        local_buffer.put_back(leftovers)
        local_buffer.extend(items)
        _redis_down_until = time.monotonic() + _setting("ASSIGNMENT_REDIS_RETRY_SECONDS", 5.0)
        logger.warning("Redis unreachable; buffering exposures in process", exc_info=True)
        return False


_never = threading.Event()


def _pusher(pid: int) -> None:
    while os.getpid() == pid:
        seconds = max(_setting("ASSIGNMENT_REDIS_BATCH_SECONDS", 0.05), 0.0)
        _never.wait(min(max(seconds, 0.01), 0.05))  # not time.sleep: tests patch that
        try:
            if len(outbox):
                drain_outbox(older_than=seconds)
        except Exception:  # never let the thread die
            logger.exception("exposure pusher failed")


def _ensure_pusher() -> None:
    pid = os.getpid()
    if outbox.thread_pid != pid:  # first use in this process (or after a fork)
        with outbox.lock:
            if outbox.thread_pid != pid:
                outbox.thread_pid = pid
                threading.Thread(target=_pusher, args=(pid,), name="exposure-pusher", daemon=True).start()


def drain_outbox(older_than: float = 0.0) -> int:
    """Push the batched exposures now (to the in-process buffer if Redis is unusable)."""
    count, _ = _drain(older_than)
    return count


def _drain(older_than: float = 0.0) -> tuple[int, bool]:
    """-> (items drained, whether they reached Redis)."""
    with _push_lock:
        items = outbox.take(older_than)
        if not items:
            return 0, True
        client = redis_client()
        if client is None or time.monotonic() < _redis_down_until:
            local_buffer.extend(items)
            return len(items), False
        return len(items), _push(client, items)


def record(items: Sequence[Item]) -> tuple[str, ...]:
    """Queue exposures; returns what degraded (empty when all is well). Never touches the DB,
    except the amortised write of a due in-process buffer."""
    if not items:
        return ()
    client = redis_client()
    if client is None:  # embedded mode
        local_buffer.extend(items)
        _flush_local_if_due()
        return ()
    if time.monotonic() >= _redis_down_until:
        seconds = _setting("ASSIGNMENT_REDIS_BATCH_SECONDS", 0.05)
        if seconds <= 0:
            if _push(client, list(items)):
                return ()
        else:
            due = outbox.add(items, _setting("ASSIGNMENT_REDIS_BATCH_SIZE", 200), seconds)
            _ensure_pusher()
            if not due or _drain()[1]:
                return ()
    else:
        local_buffer.extend(items)
    _flush_local_if_due()
    return (DEGRADED_LOCAL_BUFFER,)


def _flush_local_if_due() -> None:
    if local_buffer.due():
        try:
            flush_local()
        except Exception:  # the answer must not fail because the write did; items were kept
            logger.exception("could not write buffered exposures; kept for the next flush")


def flush_local() -> int:
    """Write this process's buffer to the database; on failure the items go back (poison items
    never fail the write: :func:`write` sets them aside)."""
    items = local_buffer.take()
    if not items:
        return 0
    try:
        write(items)
    except Exception:
        local_buffer.put_back(items)
        raise
    return len(items)


# --- draining Redis ------------------------------------------------------------------------------

def _claim(client, source: str, registry: str, prefix: str) -> str | None:
    """Atomically move ``source`` to a fresh registered processing list; None if empty."""
    import redis

    name = f"{prefix}{uuid.uuid4().hex}"
    client.zadd(registry, {name: time.time()})  # registered first: a crash leaves a trace
    try:
        client.rename(source, name)
    except redis.ResponseError:  # no such key: nothing to take
        client.zrem(registry, name)
        return None
    return name


def _process(client, name: str, chunk: int) -> int:
    """Upsert a processing list in chunks of about ``chunk`` items (elements hold a batch or,
    queued before batches, one item), then delete it (only after every commit)."""
    count, start, step = 0, 0, chunk
    while True:
        raw = client.lrange(name, start, start + step - 1)
        if not raw:
            break
        items, malformed = [], []
        for message in raw:
            decoded, bad = _decode_message(message)
            items.extend(decoded)
            malformed.extend(bad)
        for i in range(0, max(len(items), 1), chunk):
            write(items[i:i + chunk], rejected=malformed if i == 0 else ())
        read = len(items) + len(malformed)
        count += read
        start += len(raw)
        step = max(1, min(chunk, chunk * len(raw) // max(read, 1)))  # about `chunk` items next
    return count


def flush_redis() -> int:
    client = redis_client()
    if client is None:
        return 0
    queue, registry, prefix = _keys()
    chunk = _setting("ASSIGNMENT_EXPOSURE_FLUSH_CHUNK", 2000)
    lease = _setting("ASSIGNMENT_EXPOSURE_LEASE_SECONDS", 120.0)
    claimed: list[str] = []
    # Processing lists left by a dead flusher.
    for stale in client.zrangebyscore(registry, "-inf", time.time() - lease):
        stale = stale.decode() if isinstance(stale, bytes) else stale
        taken = _claim(client, stale, registry, prefix)
        client.zrem(registry, stale)
        if taken:
            claimed.append(taken)
    current = _claim(client, queue, registry, prefix)
    if current:
        claimed.append(current)
    total = 0
    for i, name in enumerate(claimed):
        try:
            total += _process(client, name, chunk)
        except Exception:
            # This flusher is alive and knows its lists were not written (e.g. the database is
            # down): expire their leases so that the next flush retries them at once.
            with contextlib.suppress(Exception):
                client.zadd(registry, {n: 0 for n in claimed[i:]})
            raise
        client.delete(name)
        client.zrem(registry, name)
    return total


def flush() -> int:
    """Write everything buffered (this process's batch and buffer, and the shared queue);
    returns how many items were processed."""
    drain_outbox()
    total = flush_local()
    try:
        total += flush_redis()
    except Exception as exc:
        import redis

        if not isinstance(exc, redis.RedisError):
            raise
        logger.warning("Redis unreachable during flush; will retry", exc_info=True)
    return total


def _flush_at_exit() -> None:
    try:
        drain_outbox()
        if len(local_buffer):
            flush_local()
    except Exception:
        logger.exception("exposures lost at exit: %d", len(local_buffer))


atexit.register(_flush_at_exit)


def _on_sigterm(signum, frame) -> None:
    """Write the buffer, then die of SIGTERM as if this handler were not there.

    The flush runs in a fresh thread (its own database connection; the interrupted main thread
    may be inside a query or hold the buffer's lock), bounded by
    ``ASSIGNMENT_EXPOSURE_SIGTERM_SECONDS``.
    """
    worker = threading.Thread(target=_flush_at_exit, name="exposure-sigterm-flush", daemon=True)
    worker.start()
    worker.join(_setting("ASSIGNMENT_EXPOSURE_SIGTERM_SECONDS", 10.0))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def install_sigterm_flush() -> bool:
    """Flush the in-process buffer on SIGTERM too (``atexit`` does not run on a signal).

    Only where nobody else handles SIGTERM: gunicorn and Celery install their own handlers,
    which end the process normally, so ``atexit`` runs there. Called from ``AppConfig.ready``;
    True when installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
            return False
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter / platform without signals
        return False
    return True


# --- poison items -----------------------------------------------------------------------------

#: Errors that a particular item causes (the database refused a value); anything else (an outage,
#: a missing table) is the same for every item, so the batch is kept and retried instead.
ITEM_ERRORS = (DataError, IntegrityError, ValueError, TypeError, OverflowError)
MAX_UNIT_ID = 256  # Exposure.unit_id
MAX_TS = 253402300799.0  # 9999-12-31T23:59:59Z
_MAX_DEPTH = 8
_DROP = object()


def _text_ok(value: str) -> bool:
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable(value, depth: int = 0):
    """``value`` as every database can store it: non-finite numbers become null; text with NUL
    characters or lone surrogates, huge integers and deep nesting become ``_DROP``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 1000 else _DROP
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if _text_ok(value) else _DROP
    if depth >= _MAX_DEPTH:
        return _DROP
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and _text_ok(k) and (v := _storable(v, depth + 1)) is not _DROP:
                out[k] = v
        return out
    if isinstance(value, list):
        return [v for v in (_storable(x, depth + 1) for x in value) if v is not _DROP]
    return _DROP


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def clean(item, memo: dict | None = None) -> tuple[Item | None, str | None]:
    """-> (the item ready to write, None) or (None, why it can never be written).

    Attributes are repaired rather than refused (the exposure itself is what counts): values
    that no database stores (infinity, NaN, NUL characters, lone surrogates) become null or are
    left out. Ids, unit ids and times that cannot be stored make the item poison. ``memo``
    shares the repair between items of one request (they share one attributes dict).
    """
    try:
        exp, variant, unit, ts, attributes = item[EXP], item[VARIANT], item[UNIT], item[TS], item[ATTRS]
    except (TypeError, IndexError, KeyError):
        return None, "not an exposure item"
    if not (_is_id(exp) and _is_id(variant)):
        return None, "experiment or variant id is not a positive 64-bit integer"
    if not isinstance(unit, str) or not 0 < len(unit) <= MAX_UNIT_ID or not _text_ok(unit):
        return None, f"unit id is not storable text of 1-{MAX_UNIT_ID} characters"
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts <= MAX_TS:
        return None, "time is not a finite time between 1970 and 9999"
    if len(item) > PHASE and not (_is_id(item[PHASE]) and item[PHASE] <= MAX_PHASE):
        return None, f"phase is not an integer from 1 to {MAX_PHASE}"
    hit = memo.get(id(attributes)) if memo is not None else None
    if hit is not None and hit[0] is attributes:
        fixed = hit[1]
    else:
        fixed = _storable(attributes) if type(attributes) is dict else {}
        if fixed is _DROP:
            fixed = {}
        if type(attributes) is dict and fixed == attributes:
            fixed = attributes
        if memo is not None:
            memo[id(attributes)] = (attributes, fixed)  # keeps ``attributes`` alive: ids stay unique
    if fixed is attributes:
        return item, None
    return (*item[:ATTRS], fixed, *item[ATTRS + 1 :]), None  # type: ignore[return-value]


def write(items: Sequence[Item], *, rejected: Sequence[tuple[object, str]] = ()) -> int:
    """Write ``items`` so that no single item can block the others; returns rows written.

    Each item is cleaned (:func:`clean`); if the database still refuses a batch for a reason
    tied to an item (``ITEM_ERRORS``), the batch is split in halves until the refused items are
    alone. Refused items, and ``rejected`` ones (``(raw, reason)``), are set aside in
    ``RejectedExposure`` with a logged reason. An outage raises: the caller keeps the items.
    """
    good: list[Item] = []
    poison: list[tuple[object, str]] = list(rejected)
    repaired = 0
    memo: dict = {}
    for item in items:
        fixed, reason = clean(item, memo)
        if fixed is None:
            poison.append((item, reason or "invalid"))
            continue
        repaired += fixed is not item
        good.append(fixed)
    if repaired:
        logger.warning("exposure attributes repaired before writing (%d items): values no database "
                       "stores (non-finite numbers, NUL characters, lone surrogates) became null or were "
                       "left out", repaired)
    written = _write_isolating(good, poison) if good else 0
    if poison:
        set_aside(poison)
    return written


def _write_isolating(items: list[Item], poison: list[tuple[object, str]]) -> int:
    try:
        return upsert(items)
    except ITEM_ERRORS as exc:
        if len(items) == 1:
            poison.append((items[0], f"refused by the database: {type(exc).__name__}: {str(exc)[:300]}"))
            return 0
        middle = len(items) // 2
        return _write_isolating(items[:middle], poison) + _write_isolating(items[middle:], poison)


def _as_text(raw: object) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "backslashreplace")
    if isinstance(raw, tuple):
        raw = list(raw)
    return _dumps_ascii(raw)[:20_000]  # ASCII: NUL and surrogates escaped, storable anywhere


def set_aside(poison: Sequence[tuple[object, str]]) -> None:
    """Store refused items in ``RejectedExposure`` and log why (without unit ids)."""
    from collections import Counter

    from . import erasure
    from .models import RejectedExposure

    rows = []
    for raw, reason in poison:
        unit = raw[UNIT] if isinstance(raw, tuple) and len(raw) > UNIT and isinstance(raw[UNIT], str) else ""
        rows.append(RejectedExposure(reason=reason[:500], item=_as_text(raw),
                                     unit_hash=erasure.unit_hash(unit) if unit else ""))
    RejectedExposure.objects.bulk_create(rows, batch_size=200)
    for reason, n in Counter(reason.split(":")[0] for _, reason in poison).items():
        logger.error("set aside %d exposure(s) that cannot be written (%s); see RejectedExposure", n, reason)


# --- the bulk upsert ------------------------------------------------------------------------------

def collapse(items: Iterable[Item]) -> list[tuple]:
    """One item per (experiment, phase, unit): earliest time (with its variant and attributes)
    plus the latest time, returned as ``(exp, variant, unit, first, attrs, last, phase)``."""
    first: dict[tuple[int, int, str], Item] = {}
    last: dict[tuple[int, int, str], float] = {}
    for item in items:
        key = (item[EXP], item[PHASE] if len(item) > PHASE else 1, item[UNIT])
        seen = first.get(key)
        if seen is None or item[TS] < seen[TS]:
            first[key] = item
        if item[TS] > last.get(key, float("-inf")):
            last[key] = item[TS]
    return [(*first[key][:PHASE], last[key], key[1]) for key in first]


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def upsert(items: Iterable[Item]) -> int:
    """Insert or merge exposures with one ``INSERT ... ON CONFLICT`` per batch (SQLite & PG).

    Items of deleted experiments or variants (or a variant of another experiment) are skipped,
    and so are items of erased units from before their erasure: the tombstones are read under
    the erasure lock, in the transaction of the write (``assignment.erasure``).
    """
    from . import erasure

    items = list(items)
    if not items:
        return 0
    with transaction.atomic():
        erasure.lock_for_write()
        return _upsert(drop_erased(items))


def drop_erased(items: list[Item]) -> list[Item]:
    """``items`` without those of erased units timed at or before the unit's erasure."""
    from . import erasure

    oldest = _dt(min(item[TS] for item in items))
    erased = erasure.erased_at((item[UNIT] for item in items), since=oldest)
    if not erased:
        return items
    limits = {unit: when.timestamp() for unit, when in erased.items()}
    kept = [item for item in items if item[TS] > limits.get(item[UNIT], -math.inf)]
    if len(kept) < len(items):
        logger.info("dropped %d buffered exposure(s) of erased units", len(items) - len(kept))
    return kept


def _upsert(items: list[Item]) -> int:
    from experiments.models import Variant

    from .models import Exposure

    rows = collapse(items)
    if not rows:
        return 0
    variant_ids = {row[1] for row in rows}
    owner = dict(Variant.objects.filter(pk__in=variant_ids).values_list("pk", "experiment_id"))
    rows = [row for row in rows if owner.get(row[1]) == row[0]]
    if not rows:
        return 0
    meta = Exposure._meta
    table = connection.ops.quote_name(meta.db_table)
    names = ("experiment", "variant", "unit_id", "first_seen", "last_seen", "attributes", "phase")
    fields = [meta.get_field(n) for n in names]
    cols = [connection.ops.quote_name(f.column) for f in fields]
    ex, var, unit, first, last, attrs, phase = cols
    newer = f"excluded.{first} < {table}.{first}"
    sql_head = f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
    sql_tail = (
        f" ON CONFLICT ({ex}, {phase}, {unit}) DO UPDATE SET "
        f"{var} = CASE WHEN {newer} THEN excluded.{var} ELSE {table}.{var} END, "
        f"{attrs} = CASE WHEN {newer} THEN excluded.{attrs} ELSE {table}.{attrs} END, "
        f"{first} = CASE WHEN {newer} THEN excluded.{first} ELSE {table}.{first} END, "
        f"{last} = CASE WHEN excluded.{last} > {table}.{last} THEN excluded.{last} ELSE {table}.{last} END"
    )
    attrs_field = fields[5]
    adapt_dt = connection.ops.adapt_datetimefield_value
    times: dict[float, object] = {}  # exposures of one request share a timestamp
    blobs: dict[int, object] = {}  # ... and one attributes dict

    def when(ts: float):
        value = times.get(ts)
        if value is None:
            value = times[ts] = adapt_dt(_dt(ts))
        return value

    def blob(attributes: dict):
        value = blobs.get(id(attributes))
        if value is None:
            value = blobs[id(attributes)] = attrs_field.get_db_prep_save(attributes, connection)
        return value

    batch = 400  # 7 parameters a row stays under SQLite's variable limit
    with connection.cursor() as cursor:  # inside upsert's transaction
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            params: list = []
            for exp_id, variant_id, unit_id, first_ts, attributes, last_ts, phase_no in chunk:
                params += [exp_id, variant_id, unit_id, when(first_ts), when(last_ts), blob(attributes), phase_no]
            placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            cursor.execute(sql_head + placeholders + sql_tail, params)
    from .signals import exposures_written

    exposures_written.send(sender=Exposure, rows=rows)  # in the transaction: a failure keeps the items
    return len(rows)
