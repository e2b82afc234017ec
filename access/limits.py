"""Request-size limits shared by the endpoints that take client bodies."""
from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response


def body_too_large(request, limit: int) -> Response | None:
    """A 413 JSON answer when the declared body exceeds ``limit`` bytes, before reading it."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return Response(
            {"detail": f"The request body is over {limit} bytes."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return None
