"""The process-local configuration: built once, then served without touching the database.

Every change to a definition bumps a version stamp in the shared Django cache (see
``signals``). Each process reads the stamp at most every ``ASSIGNMENT_CONFIG_CHECK_SECONDS``
(default 1 s) and rebuilds when it moved, so all processes converge within about a second while
the hot path costs one dict lookup. ``ASSIGNMENT_CONFIG_MAX_AGE`` (default 300 s) rebuilds
anyway, a safety net for writes that bypass model signals (``QuerySet.update``).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from .clientdoc import client_document, secret_override_salt
from .document import Ids, build_document, canonical_json
from .evaluator import Evaluator

logger = logging.getLogger(__name__)

STAMP_KEY = "assignment:config:stamp"


@dataclass(frozen=True)
class State:
    evaluator: Evaluator
    document: dict
    body: bytes  # the document rendered once, served as is by GET /config
    etag: str
    ids: Ids
    #: The client-safe document (assignment.clientdoc) rendered once, and its ETag.
    client_body: bytes = b""
    client_etag: str = ""
    client_version: str = ""

    @property
    def version(self) -> str:
        return self.document["version"]


#: How many past configurations each process keeps to check SDK exposures against the
#: version they name (POST /api/v1/exposures).
RECENT_VERSIONS = 32
_recent: OrderedDict[str, State] = OrderedDict()


_lock = threading.Lock()


@dataclass
class _Slot:
    """One environment's configuration in this process and when it was last checked."""

    state: State | None = None
    stamp: object = None
    checked_at: float = 0.0
    built_at: float = 0.0


#: ``environment key -> its slot``; each environment is built, checked and served on its own.
_slots: dict[str, _Slot] = {}
_stamp: object = None  # the last stamp read by any environment (kept while the cache is down)


def bump_version() -> None:
    """Tell every process (this one at once) that the definitions changed."""
    global _stamp
    try:
        cache.set(STAMP_KEY, uuid.uuid4().hex, timeout=None)
    except Exception:  # the shared cache is down: other processes catch up by max age
        logger.warning("could not bump the assignment config stamp", exc_info=True)
    _stamp = None
    for slot in list(_slots.values()):
        slot.stamp = None
        slot.checked_at = 0.0


def _read_stamp() -> object:
    global _stamp
    try:
        stamp = cache.get(STAMP_KEY)
        if stamp is None:
            cache.add(STAMP_KEY, uuid.uuid4().hex, timeout=None)
            stamp = cache.get(STAMP_KEY)
        _stamp = stamp
        return stamp
    except Exception:
        logger.warning("shared cache unavailable; config refreshed by age only", exc_info=True)
        return _stamp if _stamp is not None else "unavailable"


def _build(environment: str, previous: State | None) -> State:
    document, ids = build_document(environment)
    if previous is not None and previous.version == document["version"]:
        return previous  # nothing that matters changed: keep the compiled evaluator
    body = canonical_json(document)
    client = client_document(document, secret_override_salt(settings.SECRET_KEY))
    return State(
        Evaluator(document), document, body, f'"{document["version"]}"', ids,
        canonical_json(client), f'"{client["version"]}"', client["version"],
    )


def _remember(state: State) -> None:
    """Index ``state`` by both its versions (called under ``_lock``)."""
    for version in (state.version, state.client_version):
        _recent[version] = state
        _recent.move_to_end(version)
    while len(_recent) > 2 * RECENT_VERSIONS:
        _recent.popitem(last=False)


def for_version(version: str | None) -> State | None:
    """The configuration this process served as ``version`` (full or client), if still known."""
    if not version:
        return None
    return _recent.get(version)


def current(environment: str = "production") -> State:
    """The configuration of ``environment`` in this process, refreshed when the shared stamp moved."""
    slot = _slots.get(environment)
    now = time.monotonic()
    check = getattr(settings, "ASSIGNMENT_CONFIG_CHECK_SECONDS", 1.0)
    if slot is not None and slot.state is not None and now - slot.checked_at < check:
        return slot.state
    with _lock:
        slot = _slots.setdefault(environment, _Slot())
        state = slot.state
        if state is not None and now - slot.checked_at < check:
            return state
        stamp = _read_stamp()
        max_age = getattr(settings, "ASSIGNMENT_CONFIG_MAX_AGE", 300.0)
        if state is None or stamp != slot.stamp or now - slot.built_at >= max_age:
            try:
                state = _build(environment, state)
            except Exception:
                if state is None:
                    raise
                # Keep answering from the last good configuration; try again next check.
                logger.exception("could not rebuild the assignment config; serving the previous one")
                slot.checked_at = now
                return state
            slot.state, slot.stamp, slot.built_at = state, stamp, now
            _remember(state)
        slot.checked_at = now
        return state


def reset() -> None:
    """Forget everything (tests)."""
    global _stamp
    with _lock:
        _slots.clear()
        _stamp = None
        _recent.clear()
