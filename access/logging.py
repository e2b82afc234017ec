"""Keep unit ids and API keys out of the logs: units are opaque ids, but still a person's data.

``install()`` (called when the app loads) redacts every record as it is created, so the rule
holds for every handler in the process -- Django's console handler, gunicorn's loggers, Celery's,
pytest's capture -- not only for handlers that carry ``RedactFilter``.
"""
from __future__ import annotations

import logging
import re

# Everything after /units/ up to the end of the path (" HTTP/1.1", a quote, the end of the line):
# Django logs the decoded path, so an id may hold spaces and slashes.
_UNIT_PATH = re.compile(r"(/units/)[^\"'\n]*?(?=\sHTTP/|[\"'\n]|$)")
# A URL query string (``?name=value...``), not any question mark in a sentence.
_QUERY = re.compile(r"\?(?=[^\s\"'?]*=)[^\s\"']*")
_API_KEY = re.compile(r"(Api-Key\s+)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    text = _UNIT_PATH.sub(r"\1<redacted>", text)
    text = _QUERY.sub("?<redacted>", text)
    return _API_KEY.sub(r"\1<redacted>", text)


def _clean(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, ()


class RedactFilter(logging.Filter):
    """Rewrites a record's message so paths, query strings and keys carry no identifiers."""

    def filter(self, record: logging.LogRecord) -> bool:
        _clean(record)
        return True


def install() -> None:
    """Redact records at creation (idempotent). Only records that pass their logger's level are
    created, so the cost is one regex pass per record actually logged."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _clean(record)
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
