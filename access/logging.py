"""Keep unit ids and API keys out of the logs: units are opaque ids, but still a person's data."""
from __future__ import annotations

import logging
import re

_UNIT_PATH = re.compile(r"(/units/)[^\s/?\"']+")
_QUERY = re.compile(r"\?[^\s\"']*")
_API_KEY = re.compile(r"(Api-Key\s+)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    text = _UNIT_PATH.sub(r"\1<redacted>", text)
    text = _QUERY.sub("?<redacted>", text)
    return _API_KEY.sub(r"\1<redacted>", text)


class RedactFilter(logging.Filter):
    """Rewrites a record's message so paths, query strings and keys carry no identifiers."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True
