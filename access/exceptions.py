"""JSON errors everywhere: DRF errors, Django's 404/500 and database outages."""
from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError
from django.db.models import ProtectedError, RestrictedError
from django.http import JsonResponse
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .limits import api_max_body, too_large_message

logger = logging.getLogger(__name__)


def json_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        # Domain rules from the service layers: a 400 naming the field, like serializer errors.
        body = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, RequestDataTooBig):
        # Django refuses to read a body over DATA_UPLOAD_MAX_MEMORY_SIZE: a 413 in JSON, not
        # its HTML 400 page.
        return Response({"detail": too_large_message(api_max_body())},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    response = exception_handler(exc, context)
    if response is not None:
        if isinstance(response.data, list):
            response.data = {"detail": response.data}
        return response
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", type(exc).__name__)
        return Response(
            {"detail": "The database is unavailable; retry later."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, (ProtectedError, RestrictedError)):
        # A delete that would take exposures, snapshots or overrides with it (docs/operations.md).
        kinds = sorted({str(o._meta.verbose_name_plural) for o in getattr(exc, "protected_objects", None)
                        or getattr(exc, "restricted_objects", ())})
        return Response(
            {"detail": f"Refused: {', '.join(kinds) or 'other records'} refer to this; it is kept."},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, IntegrityError):
        # A unique or foreign-key rule the service layer could not see coming (a concurrent write).
        logger.warning("integrity error: %s", exc.__class__.__name__)
        return Response(
            {"detail": "The request conflicts with data written concurrently; reload and try again."},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, DataError):
        # A value the database cannot store (PostgreSQL refuses NUL characters in text, numbers
        # out of range): retrying cannot help, so it is the request's fault, not an outage.
        logger.warning("database refused a value: %s", type(exc).__name__)
        return Response(
            {"detail": "The request holds a value the database cannot store "
                       "(for example a NUL character or an out-of-range number)."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        return Response(
            {"detail": "The database could not complete the request; retry later."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    return None


def json_404(request, exception=None):
    return JsonResponse({"detail": "Not found."}, status=404)


def json_500(request):
    return JsonResponse({"detail": "Internal server error."}, status=500)


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def json_400_or_page(request, exception=None):
    """Django's own 400s (a body over the size limit read outside a view, a suspicious
    request) are JSON under /api/ too."""
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"detail": too_large_message(api_max_body())}, status=413)
        return JsonResponse({"detail": "Bad request."}, status=400)
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def json_404_or_page(request, exception=None):
    if _is_api(request):
        return json_404(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_500_or_page(request):
    if _is_api(request):
        return json_500(request)
    from django.views.defaults import server_error

    return server_error(request)
