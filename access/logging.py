"""Keep unit ids and API keys out of the logs: units are opaque ids, but still a person's data.

``install()`` (called when the app loads) redacts every record as it is created, so the rule
holds for every handler in the process -- Django's console handler, gunicorn's loggers, Celery's,
pytest's capture -- not only for handlers that carry ``RedactFilter``.
"""
from __future__ import annotations

import logging
import re


def _encoded(word: str) -> str:
    """A regex for ``word`` with any of its characters possibly percent-encoded (``%75nits``)."""
    return "".join(f"(?:{c}|%{ord(c):02x})" for c in word)


_SLASH = "(?:/|%2f)"
# Everything after /units/ (literal or percent-encoded, e.g. /%75nits%2F, which Django routes
# to the same view) up to a request line's " HTTP/1.1" or else the end of the message: a
# decoded path may hold quotes, spaces, slashes, newlines and any other character.
_UNIT_PATH = re.compile(rf"({_SLASH}{_encoded('units')}{_SLASH}).*?(?=\sHTTP/\d|\Z)", re.IGNORECASE | re.DOTALL)
# In a decoded path (django.request's "Not Found: <path>" and the like) nothing marks the end
# of the id: everything after /units/ goes.
_UNIT_PATH_DECODED = re.compile(rf"({_SLASH}{_encoded('units')}{_SLASH}).*", re.IGNORECASE | re.DOTALL)
# A URL query string: a "?" between two non-space characters, up to the next whitespace (a raw
# request line has none inside its target) -- quotes included. "Is Redis up? yes" is left alone.
_QUERY = re.compile(r"(?<=\S)\?(?=\S)\S*")
_API_KEY = re.compile(r"(Api-Key\s+)\S+", re.IGNORECASE)
#: Loggers whose messages end with a decoded request path.
DECODED_PATH_LOGGERS = ("django.request", "django.security")


def redact(text: str, *, decoded_path: bool = False) -> str:
    """``text`` without unit ids (paths under /units/, query strings) or API keys.

    ``decoded_path``: the message ends with a percent-decoded path (Django's request warnings),
    so everything after ``/units/`` is the id, whatever it contains.
    """
    text = (_UNIT_PATH_DECODED if decoded_path else _UNIT_PATH).sub(r"\1<redacted>", text)
    text = _QUERY.sub("?<redacted>", text)
    return _API_KEY.sub(r"\1<redacted>", text)


def _clean(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:
        return
    cleaned = redact(message, decoded_path=record.name.startswith(DECODED_PATH_LOGGERS))
    if cleaned != message:
        record.msg, record.args = cleaned, ()
    if record.exc_info and not record.exc_text:
        # A traceback ends with the exception's message, which may quote a path or a query
        # string (Resolver404, DisallowedHost ...): format it now, redacted; formatters reuse it.
        # Line by line, so the redaction of one line does not swallow the rest of the traceback.
        text = _TRACEBACKS.formatException(record.exc_info)
        record.exc_text = "\n".join(redact(line) for line in text.split("\n"))


_TRACEBACKS = logging.Formatter()


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
