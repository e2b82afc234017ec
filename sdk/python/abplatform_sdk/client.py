"""The client: a configuration kept fresh in the background and exposures sent in batches.

``Client.assign`` never touches the network: it evaluates against the last good configuration
(an immutable :class:`Evaluator` swapped atomically by the refresh thread) and appends an
exposure to a bounded in-memory queue that a flush thread posts to ``/api/v1/exposures``.

Failure behaviour:

* The server is down, slow, answers 5xx or sends bad JSON: the refresh keeps the last good
  configuration and tries again at the next interval; the flush keeps its batch and retries
  with exponential backoff (capped), so nothing is lost while the queue has room.
* The queue is bounded (``max_queue``): when full the *oldest* exposure is dropped and counted
  in ``stats["dropped"]`` rather than letting memory grow without limit.
* Repeats are not queued: the server keeps the first exposure per (experiment, phase, unit),
  so each experiment remembers the units it queued, at most ``dedupe_limit`` of them (then it
  forgets them all and starts again: bounded memory). A forgotten unit's repeat is queued
  again and the server ignores it. A new configuration forgets everything (it may start a new
  phase).
* A queued exposure keeps a copy of the attributes (the caller may change its mapping
  afterwards); a mapping of plain text passed again unchanged shares its copy (see
  ``_snapshot``); a value JSON cannot encode (a date, a Decimal) is sent as text.
* No configuration ever loaded (server unreachable at start, no ``cache_path`` copy): every
  answer is the ``default`` the caller passes, with reason ``no_config``, and nothing is logged.
* ``close()`` (also run at interpreter exit) stops the threads and flushes what is queued,
  within ``close_timeout`` seconds.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import json
import logging
import os
import random
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from .evaluator import ASSIGNED, NO_CONFIG, UNKNOWN_EXPERIMENT, Assignment, DocumentError, Evaluator
from .flags import FlagsMixin

logger = logging.getLogger("abplatform_sdk")

MAX_BATCH = 1000  # the server's limit per POST /api/v1/exposures


class _Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class Client(FlagsMixin):
    """Assign locally from ``GET /api/v1/config`` and report exposures in batches.

    >>> client = Client("https://ab.example.com", api_key="...")          # doctest: +SKIP
    >>> client.assign("checkout-button", "u-123", {"country": "CN"}).variant  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        refresh_seconds: float = 30.0,
        flush_seconds: float = 2.0,
        batch_size: int = 200,
        max_queue: int = 10_000,
        timeout: float = 5.0,
        cache_path: str | os.PathLike | None = None,
        max_backoff: float = 60.0,
        log_exposures: bool = True,
        close_timeout: float = 5.0,
        background: bool = True,
        bootstrap: Mapping[str, Any] | None = None,
        start: bool = True,
        dedupe_limit: int = 20_000,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Api-Key {api_key}", "Accept": "application/json",
                         "User-Agent": "abplatform-sdk-python/0.1"}
        self.refresh_seconds = refresh_seconds
        self.flush_seconds = flush_seconds
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.max_queue = max(1, max_queue)
        self.timeout = timeout
        self.cache_path = os.fspath(cache_path) if cache_path is not None else None
        self.max_backoff = max_backoff
        self._log_exposures = log_exposures
        self.close_timeout = close_timeout
        self.background = background
        self._evaluator: Evaluator | None = None
        # experiment -> ``(unit_id, attributes=None) -> Assignment`` with the exposure logging
        # built in: the whole of ``assign`` for a known experiment (see ``_compile``).
        self._fast: dict[str, Callable[..., Assignment]] = {}
        self._etag: str | None = None
        # Flat: each exposure is _FIELDS consecutive items, added by one ``extend`` of a tuple
        # (atomic under the GIL: no Python code runs inside it) and removed from the left only
        # under ``_lock``, so records never interleave. Flat because a queued tuple holding the
        # attributes dict would stay tracked by the garbage collector and be promoted to its
        # oldest generation, making full collections of a large application more frequent.
        # Bounded without a lock on the evaluation path: whoever appends past ``max_queue``
        # drops the oldest exposure and counts it, so the common path counts nothing; what was
        # queued follows exactly (see ``stats``). Racing appenders may overshoot the bound by
        # one exposure each, never more.
        self._queue: deque[Any] = deque()
        self._dropped = _Counter()
        self._deduplicated = _Counter()
        self._taken = 0  # items removed by the flusher (under _lock)
        self._readded = 0  # items put back after a failed send (under _lock)
        self._lost = 0  # items of a failed send with no room to go back (under _lock)
        self._lock = threading.Lock()
        self._wake_flush = threading.Event()
        self._stop = threading.Event()
        # experiment -> the units whose exposure is already queued (see the module docstring);
        # at most ``dedupe_limit`` per experiment.
        self._seen: dict[str, set[str]] = {}
        self._dedupe_limit = max(1, dedupe_limit)
        # The caller's last mapping, and ``(mapping, copy)`` a plain-text mapping shares while
        # it stays equal to its copy (see ``_snapshot``); one item each, swapped atomically.
        self._pending: list[Any] = [None]
        self._reusable: list[tuple[Any, Any]] = [(None, None)]
        self._threads: list[threading.Thread] = []
        if bootstrap is not None:  # a document to serve before (or without) the first fetch
            self._install(Evaluator(bootstrap))
        self._stats = {
            "sent": 0, "rejected": 0, "flush_errors": 0, "refreshes": 0, "not_modified": 0,
            "refresh_errors": 0,
        }
        self.last_error: str | None = None
        if start:
            self.start()

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the configuration once (server, else the cache file), then start the threads."""
        if not self.refresh():
            self._load_cache()
        # Without background threads (serverless, tests) the caller runs refresh() and flush().
        threads = (("config", self._refresh_loop), ("exposures", self._flush_loop))
        for name, target in threads if self.background else ():
            thread = threading.Thread(target=target, name=f"abplatform-sdk-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        ref = weakref.ref(self)
        atexit.register(lambda: (c := ref()) is not None and c.close())

    def close(self) -> None:
        """Stop the background threads and flush the queue (bounded by ``close_timeout``)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake_flush.set()
        for thread in self._threads:
            thread.join(self.close_timeout)
        deadline = time.monotonic() + self.close_timeout
        while self._queue and time.monotonic() < deadline:
            if self._flush_once() is False:
                break

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- evaluation (no I/O) ---------------------------------------------------------------------

    @property
    def config_version(self) -> str | None:
        evaluator = self._evaluator
        return evaluator.version if evaluator is not None else None

    @property
    def ready(self) -> bool:
        return self._evaluator is not None

    @property
    def log_exposures(self) -> bool:
        return self._log_exposures

    @log_exposures.setter
    def log_exposures(self, value: bool) -> None:
        self._log_exposures = bool(value)
        if self._evaluator is not None:
            self._fast = self._compile(self._evaluator)

    def assign(self, experiment: str, unit_id: str, attributes: Mapping[str, Any] | None = None,
               default: str | None = None) -> Assignment:
        """The variant of ``experiment`` for ``unit_id``; logs an exposure when enrolled.

        Without a configuration (never loaded), the answer is ``default`` (reason ``no_config``).
        The answer is frozen and may be shared with other calls (it names no unit).
        """
        try:  # (a subscript is cheaper than ``.get``; only the lookup is inside the ``try``)
            fast = self._fast[experiment]
        except KeyError:
            return self._unknown(experiment, default)
        return fast(unit_id, attributes)

    def _unknown(self, experiment: str, default: str | None) -> Assignment:
        if self._evaluator is None:
            return Assignment(experiment, default, False, NO_CONFIG, "no configuration loaded", {})
        return Assignment(experiment, default, False, UNKNOWN_EXPERIMENT, "no such experiment", {})

    def _install(self, evaluator: Evaluator) -> None:
        """Serve from ``evaluator`` from now on (one reference swap each: atomic)."""
        if self._evaluator is None or evaluator.version != self._evaluator.version:
            self._seen = {}  # a new phase or salt may give units new exposures
        self._fast = self._compile(evaluator)
        self._evaluator = evaluator

    def _compile(self, evaluator: Evaluator) -> dict[str, Callable[..., Assignment]]:
        fast = dict(evaluator._assigners)
        if self._log_exposures:
            for key in evaluator.running_keys:  # only a running experiment answers ``assigned``
                seen = self._seen.setdefault(key, set())
                answers = evaluator._experiments[key].answers
                fast[key] = self._logging(key, fast[key], evaluator.version, seen, answers)
        return fast

    def _logging(self, experiment: str, assigner: Callable[..., Assignment], version: str | None,
                 seen: set[str], answers: Iterable[Assignment] = ()) -> Callable[..., Assignment]:
        """``assigner`` that queues the exposure of an ``assigned`` answer, once per unit.

        ``_expose`` does the same for any answer; this is it specialised for one experiment of
        one configuration, with every constant bound once (the hot path of ``assign``): the
        record's head (experiment, variant, version, phase) is built once per answer, so an
        exposure is four fields (head, unit, time, attributes snapshot).
        No lock: every step is one operation the GIL makes atomic (set lookup, add and clear,
        deque extend, list item swap, ``next`` on a count). Two threads assigning the same new
        unit at the same instant may both queue it (the server keeps the first); racing adds
        may pass the limit by one unit per thread. Neither loses an exposure or lets memory grow.
        """
        queue = self._queue
        extend, now, limit = queue.extend, _now, self._dedupe_limit
        max_items, batch_items = self.max_queue * _FIELDS, self.batch_size * _FIELDS
        wake, drop, deduplicated = self._wake_flush.set, self._drop_oldest, self._deduplicated.add
        heads = {answer: (experiment, answer.variant, version, answer.phase)
                 for answer in answers if answer.reason == ASSIGNED}
        head_of, remember = heads.get, seen.add
        snapshot, reusable, pending = self._snapshot, self._reusable, self._pending

        def assign(unit_id: str, attributes: Mapping[str, Any] | None = None) -> Assignment:
            answer = assigner(unit_id, attributes)
            head = head_of(answer)
            if head is None:
                if answer.reason != ASSIGNED:
                    return answer
                head = (experiment, answer.variant, version, answer.phase)
            if unit_id in seen:
                deduplicated()
                return answer
            if len(seen) >= limit:  # full: forget everyone (bounded memory)
                seen.clear()
            remember(unit_id)
            if attributes:
                # The caller's mapping is snapshotted (it may change it afterwards); the same
                # mapping still equal to a snapshot of plain text values shares that snapshot.
                source, shared = reusable[0]
                if attributes is source and shared is not None:
                    attributes = shared if attributes == shared else snapshot(attributes)
                elif attributes is pending[0] and attributes is not source:  # again: shareable?
                    attributes = snapshot(attributes)
                else:
                    pending[0] = attributes
                    try:
                        attributes = attributes.copy()  # a dict's own copy is the fastest snapshot
                    except AttributeError:
                        attributes = dict(attributes)
            else:
                attributes = None
            extend((head, unit_id, now(), attributes))
            size = len(queue)
            if size > max_items:
                drop()
            elif size == batch_items:  # wake the flusher once per batch, not every time
                wake()
            return answer

        return assign

    def _snapshot(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the caller's attributes, as queued with an exposure.

        When the same mapping comes twice in a row (``_pending``), its copy becomes the shared
        one (``_reusable``) if every key and value is plain text: a later call with that very
        mapping, still *equal* to the copy (``==`` on text is exact), queues the same copy
        rather than a new one. Any other value is copied every time (``1 == True == 1.0``:
        equal, yet sent differently). Each step swaps one list item: safe without a lock."""
        try:
            snap = attributes.copy()  # a dict's own copy is the fastest snapshot
        except AttributeError:
            snap = dict(attributes)
        pending = self._pending
        if pending[0] is attributes or self._reusable[0][0] is attributes:
            plain = type(snap) is dict and all(type(k) is str and type(v) is str for k, v in snap.items())
            self._reusable[0] = (attributes, snap if plain else None)  # None: copy it every time
        else:
            pending[0] = attributes
        return snap

    def assign_all(self, unit_id: str, attributes: Mapping[str, Any] | None = None) -> list[Assignment]:
        """Answers for every running experiment (one layer hash per layer)."""
        evaluator = self._evaluator
        if evaluator is None:
            return []
        answers = evaluator.evaluate_many(unit_id, attributes)
        if self.log_exposures:
            for answer in answers:
                if answer.reason == "assigned":
                    self._expose(answer, unit_id, attributes, evaluator.version)
        return answers

    @property
    def stats(self) -> dict[str, int]:
        """Counters: queued, sent, rejected (by the server), dropped (queue full), deduplicated,
        flush_errors, refreshes, not_modified, refresh_errors."""
        with self._lock:
            # Every item in came by an append or a put-back; every item out by a take or a drop.
            dropped, queued = self._dropped.value(), len(self._queue) // _FIELDS
            appended = queued + self._taken + dropped - self._readded
            return {**self._stats, "queued": appended, "dropped": dropped + self._lost,
                    "deduplicated": self._deduplicated.value()}

    def _expose(self, answer: Assignment, unit_id: str, attributes: Mapping[str, Any] | None,
                version: str | None) -> None:
        """Queue the exposure of an ``assigned`` answer unless this unit's is already queued.

        Lock-free like ``_logging`` (which is this, specialised per experiment for ``assign``):
        a tuple appended to a bounded deque; the JSON is built by the flusher."""
        seen = self._seen.get(answer.experiment)
        if seen is None:
            seen = self._seen.setdefault(answer.experiment, set())
        if unit_id in seen:
            self._deduplicated.add()
            return
        if len(seen) >= self._dedupe_limit:
            seen.clear()
        seen.add(unit_id)
        attributes = self._snapshot(attributes) if attributes else None
        queue = self._queue
        queue.extend(((answer.experiment, answer.variant, version, answer.phase), unit_id, _now(),
                      attributes))
        size = len(queue)
        if size > self.max_queue * _FIELDS:
            self._drop_oldest()
        elif size == self.batch_size * _FIELDS:
            self._wake_flush.set()

    def _drop_oldest(self) -> None:
        """The queue is over its bound: drop (and count) the oldest exposures."""
        queue, popleft, limit = self._queue, self._queue.popleft, self.max_queue * _FIELDS
        with self._lock:  # whole records leave from the left only under the lock
            while len(queue) > limit:
                for _ in range(_FIELDS):
                    popleft()
                self._dropped.add()

    @property
    def queue_size(self) -> int:
        return len(self._queue) // _FIELDS

    def _records(self) -> list[tuple]:
        """The queued exposures, oldest first, each ``(experiment, variant, unit_id, timestamp,
        attributes, config version, phase)`` (a snapshot, for tests and debugging)."""
        with self._lock:
            items = list(self._queue)
        return [_unpacked(tuple(items[i:i + _FIELDS])) for i in range(0, len(items) - _FIELDS + 1, _FIELDS)]

    # --- configuration ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: Mapping[str, str] | None = None) -> _Response:
        request = urllib.request.Request(self.base_url + path, data=body, method=method,
                                         headers={**self._headers, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return _Response(response.status, response.headers, response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return _Response(exc.code, exc.headers, exc.read())

    def refresh(self) -> bool:
        """Fetch the configuration now (If-None-Match); True when a usable one is loaded."""
        headers = {"If-None-Match": self._etag} if self._etag else {}
        try:
            response = self._request("GET", "/api/v1/config", headers=headers)
            if response.status == 304 and self._evaluator is not None:
                self._stats["not_modified"] += 1
                return True
            if response.status != 200:
                raise OSError(f"GET /api/v1/config answered {response.status}")
            document = json.loads(response.body)
            evaluator = Evaluator(document)
        except (OSError, ValueError, DocumentError) as exc:  # URLError, timeouts, bad JSON
            self._stats["refresh_errors"] += 1
            self.last_error = f"config: {exc}"
            logger.warning("abplatform: configuration refresh failed (%s); keeping the last good one", exc)
            return self._evaluator is not None
        self._install(evaluator)
        self._etag = response.headers.get("ETag")
        self._stats["refreshes"] += 1
        self._save_cache(response.body)
        return True

    def _save_cache(self, body: bytes) -> None:
        if not self.cache_path:
            return
        directory = os.path.dirname(os.path.abspath(self.cache_path))
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".abplatform-config-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
            os.replace(tmp, self.cache_path)
        except OSError as exc:
            logger.warning("abplatform: could not save the configuration to %s: %s", self.cache_path, exc)

    def _load_cache(self) -> None:
        if not self.cache_path or self._evaluator is not None:
            return
        try:
            with open(self.cache_path, "rb") as handle:
                self._install(Evaluator(json.loads(handle.read())))
            logger.warning("abplatform: server unreachable; using the saved configuration %s",
                           self._evaluator.version)
        except (OSError, ValueError, DocumentError) as exc:
            logger.warning("abplatform: no usable saved configuration (%s)", exc)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds * random.uniform(0.9, 1.1)):  # noqa: S311
            self.refresh()

    # --- exposures -------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Send everything queued now (from the caller's thread); False if a batch failed."""
        while self._queue:
            if not self._flush_once():
                return False
        return True

    def _take(self) -> list[tuple]:
        with self._lock:
            queue = self._queue
            popleft = queue.popleft
            count = min(self.batch_size, len(queue) // _FIELDS)
            batch = [tuple([popleft() for _ in range(_FIELDS)]) for _ in range(count)]
            self._taken += count
            return batch

    def _put_back(self, batch: list[tuple]) -> None:
        with self._lock:
            # The batch is older than everything queued: when room is short, its oldest go.
            room = self.max_queue - len(self._queue) // _FIELDS
            keep = batch[-room:] if room > 0 else []
            self._readded += len(keep)
            self._lost += len(batch) - len(keep)
            self._queue.extendleft([field for record in reversed(keep) for field in reversed(record)])

    def _flush_once(self) -> bool:
        batch = self._take()
        if not batch:
            return True
        # default=str: an attribute value JSON cannot encode (a date, a Decimal) goes as text
        # rather than failing the whole batch forever.
        body = json.dumps({"exposures": [_wire(item) for item in batch]}, separators=(",", ":"),
                          default=str).encode()
        try:
            response = self._request("POST", "/api/v1/exposures", body,
                                     {"Content-Type": "application/json"})
        except OSError as exc:
            self._failed(batch, f"exposures: {exc}")
            return False
        if response.status >= 500 or response.status == 429:
            self._failed(batch, f"exposures: HTTP {response.status}")
            return False
        if response.status >= 400:
            # The batch as a whole is refused (bad key, bad body): retrying cannot help.
            self._stats["rejected"] += len(batch)
            self.last_error = f"exposures: HTTP {response.status} {response.body[:200]!r}"
            logger.error("abplatform: exposures refused (%s)", self.last_error)
            return True
        rejected = 0
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            rejected = len(json.loads(response.body).get("rejected") or [])
        self._stats["rejected"] += rejected
        self._stats["sent"] += len(batch) - rejected
        return True

    def _failed(self, batch: list[tuple], error: str) -> None:
        self._stats["flush_errors"] += 1
        self.last_error = error
        logger.warning("abplatform: %s; will retry", error)
        self._put_back(batch)

    def _flush_loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            if backoff:
                self._stop.wait(backoff)  # a full queue must not cut the backoff short
            else:
                self._wake_flush.wait(self.flush_seconds)
            self._wake_flush.clear()
            if self._stop.is_set():
                return
            ok = True
            while ok and self._queue and not self._stop.is_set():
                ok = self._flush_once()
                if ok and len(self._queue) < self.batch_size * _FIELDS:
                    break
            if ok:
                backoff = 0.0
            else:
                backoff = min(self.max_backoff, max(0.5, backoff * 2)) * random.uniform(0.8, 1.2)  # noqa: S311


_now = time.time
_FIELDS = 4  # (experiment, variant, config version, phase), unit_id, timestamp, attributes


class _Counter:
    """A thread-safe counter without a lock: ``next()`` on ``itertools.count`` is atomic in
    CPython. Reading also advances it, so reads are counted and subtracted."""

    __slots__ = ("_count", "_reads", "add")

    def __init__(self) -> None:
        self._count = itertools.count()
        self._reads = 0
        #: Count one: ``next`` on the count through a C partial (no Python frame per call).
        self.add = functools.partial(next, self._count)

    def value(self) -> int:
        """Call under a lock shared by all readers."""
        value = next(self._count) - self._reads
        self._reads += 1
        return value


def _unpacked(item: tuple) -> tuple:
    (experiment, variant, version, phase), unit_id, ts, attributes = item
    return experiment, variant, unit_id, ts, attributes, version, phase


def _wire(item: tuple) -> dict[str, Any]:
    """A queued exposure as ``POST /api/v1/exposures`` takes it."""
    (experiment, variant, version, phase), unit_id, ts, attributes = item
    out = {"experiment": experiment, "variant": variant, "unit_id": unit_id, "timestamp": _iso(ts),
           "attributes": {} if attributes is None else attributes if type(attributes) is dict else dict(attributes),
           "config_version": version}
    if phase is not None:
        out["phase"] = phase
    return out


_second: tuple[int, str] = (-1, "")  # the last whole second formatted (exposures come in bursts)


def _iso(ts: float) -> str:
    """``2026-01-02T03:04:05.678Z``: the date and time formatted once per second, not per item."""
    global _second
    millis = int(ts * 1000)
    second, fraction = divmod(millis, 1000)
    cached = _second
    if cached[0] != second:
        text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")  # noqa: UP017
        cached = _second = (second, text)
    return f"{cached[1]}.{fraction:03d}Z"
