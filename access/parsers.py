"""The API's JSON parser: strict JSON only, so no hostile body can reach a view as a 500.

DRF's parser already refuses ``NaN``; this one also turns nesting beyond
``jsonsafety.MAX_DEPTH`` (including input deep enough to exhaust the interpreter's stack) and
numbers beyond a double (``1e400``) into a 400, refuses bodies over ``API_MAX_BODY_BYTES`` with a JSON 413 (DRF reads the WSGI stream
directly, past Django's own size check), and reads the body in one call.
"""
from __future__ import annotations

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser, get_encoding

from . import jsonsafety
from .limits import BodyTooLarge, api_max_body, declared_length


def parse_json(raw: bytes, encoding: str = "utf-8"):
    """The body as JSON, or a ``ParseError`` (400) saying what is wrong with it."""
    try:
        return jsonsafety.loads(raw.decode(encoding))
    except ValueError as exc:  # includes UnicodeDecodeError and JSONInputError
        raise ParseError(f"JSON parse error - {exc}") from None


def refuse_non_finite(data) -> None:
    """A 400 naming where a number that is not a finite double sits (``1e400`` parses as
    infinity), e.g. ``{"variants[0].payload.a": ["Must be a finite number ..."]}``."""
    path = jsonsafety.non_finite_path(data)
    if path is not None:
        raise ValidationError({path or "non_field_errors": [jsonsafety.NOT_FINITE]})


class SafeJSONParser(JSONParser):
    """``application/json`` through :func:`access.jsonsafety.loads`, at most 2 MiB, every
    number finite."""

    #: Checked once here, so no endpoint can store ``inf`` -- not even as the text "inf" a
    #: string field makes of a number. The events endpoint turns it off: it rejects only the
    #: event holding such a number, by index.
    finite_numbers = True

    def parse(self, stream, media_type=None, parser_context=None):
        context = parser_context or {}
        encoding = get_encoding(context)
        limit = api_max_body()
        request = context.get("request")
        if request is not None and declared_length(request.META) > limit:
            raise BodyTooLarge(limit)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge(limit)
        data = parse_json(raw, encoding)
        if self.finite_numbers:
            refuse_non_finite(data)
        return data
