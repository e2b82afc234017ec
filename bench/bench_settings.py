"""Settings for bench/bench_assignment_http.py only: production settings plus a bare view.

Never used by the application: it adds ``/bench/bare`` (a constant JSON response through the
same middleware) as the yardstick and switches off the per-key rate limit.
"""
from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bench_urls"
API_RATE_LIMIT_ENABLED = False
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}

import os  # noqa: E402

# A private Redis namespace so a benchmark never mixes with real queued exposures.
ASSIGNMENT_REDIS_PREFIX = os.environ.get("BENCH_REDIS_PREFIX", "{assignment}")
