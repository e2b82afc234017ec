"""Request-size limits shared by every endpoint that takes a client body.

The assignment endpoints allow 64 KiB (``ASSIGNMENT_MAX_BODY_BYTES``), every other API body
``API_MAX_BODY_BYTES`` (2 MiB, also Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``). Over the limit the
answer is a JSON 413, whichever layer notices first: the view (declared length, before reading),
the parser (declared or actual length) or Django (``RequestDataTooBig``, mapped by
``access.exceptions``).
"""
from __future__ import annotations

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response


def api_max_body() -> int:
    return int(getattr(settings, "API_MAX_BODY_BYTES", 2 * 1024 * 1024))


def too_large_message(limit: int) -> str:
    return f"The request body is over {limit} bytes."


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(too_large_message(limit))


def declared_length(meta) -> int:
    try:
        return int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def body_too_large(request, limit: int) -> Response | None:
    """A 413 JSON answer when the declared body exceeds ``limit`` bytes, before reading it."""
    if declared_length(request.META) > limit:
        return Response({"detail": too_large_message(limit)}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    return None
