"""ClickHouse as the analysis store (``ANALYTICS_BACKEND=clickhouse``): table DDL and the engine.

Definitions stay in Django's database; the builder (``analysis.queries``) reads events and
exposures from ClickHouse through a ``clickhouse-connect`` client on ``CLICKHOUSE_URL`` (the
``clickhouse`` extra). Tables are ``ReplacingMergeTree``s with monthly partitions; the builder
reads them with ``FINAL`` (``dialects.ClickHouse.source``), so a row inserted twice (a retried
batch) counts once. Filling the tables (the Redis-stream loader) is not part of this module yet.
"""
from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import dialects


def ddl() -> list[str]:
    """CREATE TABLE statements (idempotent) with Django's table and column names."""
    from assignment.models import Exposure

    from .models import Event

    q = dialects.DIALECTS["clickhouse"].quote
    ts = "DateTime64(6, 'UTC')"
    return [
        f"CREATE TABLE IF NOT EXISTS {q(Event._meta.db_table)} ("
        f"{q('event_id')} String, {q('unit_id')} String, {q('event')} LowCardinality(String), "
        f"{q('value')} Nullable(Float64), {q('timestamp')} {ts}, {q('properties')} String DEFAULT '{{}}', "
        f"{q('received_at')} {ts} DEFAULT now64(6)"
        f") ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM({q('timestamp')}) ORDER BY {q('event_id')}",
        f"CREATE TABLE IF NOT EXISTS {q(Exposure._meta.db_table)} ("
        f"{q('id')} Int64, {q('experiment_id')} Int64, {q('variant_id')} Int64, {q('unit_id')} String, "
        f"{q('first_seen')} {ts}, {q('last_seen')} {ts} DEFAULT {q('first_seen')}, "
        f"{q('attributes')} String DEFAULT '{{}}', {q('phase')} UInt16 DEFAULT 1"
        f") ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM({q('first_seen')}) "
        f"ORDER BY ({q('experiment_id')}, {q('phase')}, {q('unit_id')})",
    ]


def client_engine(client: Any) -> dialects.Engine:
    """An engine over a ``clickhouse_connect`` client (client-side ``%s`` binding)."""

    def execute(d: dialects.Dialect, sql: str, params: list[Any]) -> list[tuple]:
        return [tuple(row) for row in client.query(sql, parameters=tuple(params)).result_rows]

    return dialects.Engine(dialects.DIALECTS["clickhouse"], execute)


@cache
def _client(url: str) -> Any:
    import clickhouse_connect

    parts = urlsplit(url)
    return clickhouse_connect.get_client(
        host=parts.hostname or "localhost", port=parts.port or (8443 if parts.scheme == "https" else 8123), username=parts.username or "default",
        password=parts.password or "", database=(parts.path or "/").strip("/") or "default",
        secure=parts.scheme == "https",
    )


def settings_engine() -> dialects.Engine | None:
    """The configured analysis store: None for Django's database, else ClickHouse."""
    backend = getattr(settings, "ANALYTICS_BACKEND", "django")
    if backend in ("", "django"):
        return None
    if backend != "clickhouse":
        raise ImproperlyConfigured(f"ANALYTICS_BACKEND must be 'django' or 'clickhouse', not {backend!r}")
    url = getattr(settings, "CLICKHOUSE_URL", "")
    if not url:
        raise ImproperlyConfigured("ANALYTICS_BACKEND=clickhouse needs CLICKHOUSE_URL (http[s]://user:pass@host:8123/db)")
    return client_engine(_client(url))
