"""System checks: a malformed ``API_RATE_LIMIT`` fails ``manage.py check`` (and every start-up
command), instead of failing every API request at run time."""
from __future__ import annotations

from django.core.checks import Error, register
from rest_framework.settings import api_settings

from .throttling import parse_rate


@register()
def rate_limit_is_valid(app_configs, **kwargs):
    rate = api_settings.DEFAULT_THROTTLE_RATES.get("api_key")
    if not rate:
        return []
    try:
        count, period = parse_rate(rate)
        if count < 1:
            raise ValueError(rate)
    except (ValueError, KeyError, IndexError):
        return [Error(
            f"API_RATE_LIMIT {rate!r} is not a rate.",
            hint="Write <count>/<period>: 6000/min, 100/s, 50000/hour or 1000000/day.",
            id="access.E001",
        )]
    return []
