"""Per-key rate limiting in the shared cache, so the limit holds across every web process.

A fixed window counter (one ``INCR`` per request) instead of DRF's sliding log, which stores
every request's timestamp and would cost O(rate) per request.
"""
from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip()[0].lower()]


class APIKeyRateThrottle(BaseThrottle):
    scope = "api_key"

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request, view) -> bool:
        if not getattr(settings, "API_RATE_LIMIT_ENABLED", True):
            return True
        user = request.user
        prefix = getattr(getattr(user, "key", None), "prefix", None)
        if prefix is None:
            return True  # unauthenticated requests are refused by authentication anyway
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if not rate:
            return True
        limit, period = parse_rate(rate)
        now = time.time()
        window = int(now // period)
        key = f"rl:{prefix}:{window}"
        try:
            try:
                count = cache.incr(key)
            except ValueError:
                count = 1 if cache.add(key, 1, timeout=period + 1) else cache.incr(key)
        except Exception:
            return True  # the shared cache is down: fail open rather than refuse all traffic
        if count > limit:
            self.wait_seconds = max(1, math.ceil((window + 1) * period - now))
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds
