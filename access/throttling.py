"""Per-key rate limiting in the shared cache, so the limit holds across every web process.

A fixed window counter instead of DRF's sliding log (which stores every request's timestamp
and costs O(rate) per request). Far from the limit a process counts locally and adds its count
to the shared counter at most every ``SYNC_SECONDS`` or ``SYNC_EVERY`` requests, which saves a
cache round trip on almost every request; below ``EXACT_BELOW`` requests per window, or once the
shared count passes ``EXACT_FROM`` of the limit, every request is counted in the shared cache,
so the limit itself is exact.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SYNC_SECONDS = 0.1
SYNC_EVERY = 50
EXACT_BELOW = 1000
EXACT_FROM = 0.8


def parse_rate(rate: str) -> tuple[int, int]:
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip()[0].lower()]


@dataclass
class _Window:
    number: int
    shared: int = 0      # the shared count when this process last synchronised
    pending: int = 0     # requests counted here and not yet added to the shared count
    synced_at: float = 0.0


_lock = threading.Lock()
_windows: dict[str, _Window] = {}


def _add_to_shared(key: str, amount: int, period: int) -> int:
    try:
        return cache.incr(key, amount)
    except ValueError:
        if cache.add(key, amount, timeout=period + 1):
            return amount
        return cache.incr(key, amount)


class APIKeyRateThrottle(BaseThrottle):
    scope = "api_key"

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request, view) -> bool:
        if not getattr(settings, "API_RATE_LIMIT_ENABLED", True):
            return True
        prefix = getattr(getattr(request.user, "key", None), "prefix", None)
        if prefix is None:
            return True  # unauthenticated requests are refused by authentication anyway
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if not rate:
            return True
        limit, period = parse_rate(rate)
        now = time.time()
        number = int(now // period)
        with _lock:
            state = _windows.get(prefix)
            if state is None or state.number != number:
                if len(_windows) > 10_000:
                    _windows.clear()
                state = _windows[prefix] = _Window(number)
            state.pending += 1
            estimate = state.shared + state.pending
            exact = limit < EXACT_BELOW or estimate >= limit * EXACT_FROM
            due = state.pending >= SYNC_EVERY or now - state.synced_at >= SYNC_SECONDS
            if exact or due:
                amount, state.pending = state.pending, 0
                try:
                    state.shared = _add_to_shared(f"rl:{prefix}:{number}", amount, period)
                except Exception:
                    return True  # the shared cache is down: fail open rather than refuse all traffic
                state.synced_at = now
                estimate = state.shared
        if estimate > limit:
            self.wait_seconds = max(1, math.ceil((number + 1) * period - now))
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds


def reset() -> None:
    """Forget local counts (tests)."""
    with _lock:
        _windows.clear()
