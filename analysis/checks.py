"""System checks: ``ANALYTICS_BACKEND=clickhouse`` without what it needs fails ``manage.py check``
(and every start-up command) instead of failing event requests at run time."""
from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


@register()
def clickhouse_settings(app_configs, **kwargs):
    backend = getattr(settings, "ANALYTICS_BACKEND", "django")
    if backend in ("", "django"):
        return []
    if backend != "clickhouse":
        return [Error(f"ANALYTICS_BACKEND {backend!r} is unknown.", hint="Use 'django' or 'clickhouse'.",
                      id="analysis.E001")]
    errors = []
    if not getattr(settings, "CLICKHOUSE_URL", ""):
        errors.append(Error("ANALYTICS_BACKEND=clickhouse needs CLICKHOUSE_URL.",
                            hint="http[s]://user:password@host:8123/database, or chdb://<directory>.",
                            id="analysis.E002"))
    if not getattr(settings, "REDIS_URL", None):
        errors.append(Error("ANALYTICS_BACKEND=clickhouse needs REDIS_URL: events wait in a Redis Stream.",
                            id="analysis.E003"))
    return errors
