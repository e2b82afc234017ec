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
* No configuration ever loaded (server unreachable at start, no ``cache_path`` copy): every
  answer is the ``default`` the caller passes, with reason ``no_config``, and nothing is logged.
* ``close()`` (also run at interpreter exit) stops the threads and flushes what is queued,
  within ``close_timeout`` seconds.
"""
from __future__ import annotations

import atexit
import contextlib
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
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .evaluator import NO_CONFIG, Assignment, DocumentError, Evaluator
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
        self.log_exposures = log_exposures
        self.close_timeout = close_timeout
        self.background = background
        # A document to serve from before (or without) the first fetch, e.g. baked into a build.
        self._evaluator: Evaluator | None = Evaluator(bootstrap) if bootstrap is not None else None
        self._etag: str | None = None
        # Bounded: appending to a full deque drops the oldest item, atomically (no lock on the
        # evaluation path). Drops are counted exactly from three counters (see ``stats``).
        self._queue: deque[tuple] = deque(maxlen=self.max_queue)
        self._appended = _Counter()
        self._deduplicated = _Counter()
        self._taken = 0  # items removed by the flusher (under _lock)
        self._readded = 0  # items put back after a failed send (under _lock)
        self._lock = threading.Lock()
        self._wake_flush = threading.Event()
        self._stop = threading.Event()
        self._seen: dict[tuple, None] = {}
        self._threads: list[threading.Thread] = []
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

    def assign(self, experiment: str, unit_id: str, attributes: Mapping[str, Any] | None = None,
               default: str | None = None) -> Assignment:
        """The variant of ``experiment`` for ``unit_id``; logs an exposure when enrolled.

        Without a configuration (never loaded), the answer is ``default`` (reason ``no_config``).
        """
        evaluator = self._evaluator
        if evaluator is None:
            return Assignment(experiment, default, False, NO_CONFIG, "no configuration loaded", {})
        answer = evaluator.evaluate(experiment, unit_id, attributes)
        if answer.reason == "unknown_experiment" and default is not None:
            answer.variant = default
        if answer.reason == "assigned" and self.log_exposures:
            self._expose(answer, unit_id, attributes, evaluator.version)
        return answer

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
            appended, queued = self._appended.value(), len(self._queue)
            dropped = appended + self._readded - self._taken - queued
            return {**self._stats, "queued": appended, "dropped": dropped,
                    "deduplicated": self._deduplicated.value()}

    def _expose(self, answer: Assignment, unit_id: str, attributes: Mapping[str, Any] | None,
                version: str | None) -> None:
        # The hot path, lock-free: a tuple appended to a bounded deque (atomic in CPython);
        # the JSON is built by the flusher. The server keeps the first exposure per
        # (experiment, phase, unit), so repeats are skipped (a bounded memory of recent
        # ones, forgotten when the configuration changes).
        seen_key = (answer.experiment, unit_id)
        seen = self._seen
        if seen_key in seen:
            self._deduplicated.add()
            return
        if len(seen) >= 50_000:
            seen.clear()
        seen[seen_key] = None
        queue = self._queue
        queue.append((answer.experiment, answer.variant, unit_id, _now(),
                      dict(attributes) if attributes else {}, version, answer.phase))
        self._appended.add()
        if len(queue) == self.batch_size:  # wake the flusher once per batch, not every time
            self._wake_flush.set()

    @property
    def queue_size(self) -> int:
        return len(self._queue)

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
        if self._evaluator is None or evaluator.version != self._evaluator.version:
            self._seen = {}  # a new phase or salt may give units new exposures
        self._evaluator = evaluator
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
                self._evaluator = Evaluator(json.loads(handle.read()))
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
            batch = []
            for _ in range(self.batch_size):
                try:
                    batch.append(queue.popleft())
                except IndexError:
                    break
            self._taken += len(batch)
            return batch

    def _put_back(self, batch: list[tuple]) -> None:
        with self._lock:
            # The batch is older than everything queued: when room is short, its oldest go.
            room = self.max_queue - len(self._queue)
            keep = batch[-room:] if room > 0 else []
            self._readded += len(keep)
            self._queue.extendleft(reversed(keep))

    def _flush_once(self) -> bool:
        batch = self._take()
        if not batch:
            return True
        body = json.dumps({"exposures": [_wire(item) for item in batch]}, separators=(",", ":")).encode()
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
                if ok and len(self._queue) < self.batch_size:
                    break
            if ok:
                backoff = 0.0
            else:
                backoff = min(self.max_backoff, max(0.5, backoff * 2)) * random.uniform(0.8, 1.2)  # noqa: S311


_now = time.time


class _Counter:
    """A thread-safe counter without a lock: ``next()`` on ``itertools.count`` is atomic in
    CPython. Reading also advances it, so reads are counted and subtracted."""

    __slots__ = ("_count", "_reads")

    def __init__(self) -> None:
        self._count = itertools.count()
        self._reads = 0

    def add(self) -> None:
        next(self._count)

    def value(self) -> int:
        """Call under a lock shared by all readers."""
        value = next(self._count) - self._reads
        self._reads += 1
        return value


def _wire(item: tuple) -> dict[str, Any]:
    """A queued exposure as ``POST /api/v1/exposures`` takes it."""
    experiment, variant, unit_id, ts, attributes, version, phase = item
    out = {"experiment": experiment, "variant": variant, "unit_id": unit_id, "timestamp": _iso(ts),
           "attributes": attributes, "config_version": version}
    if phase is not None:
        out["phase"] = phase
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")  # noqa: UP017
