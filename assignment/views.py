"""The assignment API: thin views over the process-local evaluator (no database once warm)."""
from __future__ import annotations

import time

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import IsClient

from . import exposures, runtime
from .serializers import (
    AssignmentRequestSerializer,
    AssignmentResponseSerializer,
    ConfigDocumentSerializer,
    ErrorSerializer,
    SingleAssignmentResponseSerializer,
)

DEGRADED_HEADER = "X-Degraded"

_ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="Missing or invalid API key."),
    403: OpenApiResponse(ErrorSerializer, description="The key lacks the client scope."),
    429: OpenApiResponse(ErrorSerializer, description="Rate limit exceeded."),
    503: OpenApiResponse(ErrorSerializer, description="Configuration could not be loaded."),
}
_BAD_REQUEST = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Invalid input; each key names a field and lists its errors.",
)


def _max_body() -> int:
    return getattr(settings, "ASSIGNMENT_MAX_BODY_BYTES", 64 * 1024)


def _too_large(request) -> Response | None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > _max_body():
        return Response(
            {"detail": f"The request body is over {_max_body()} bytes."},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return None


def _record(state: runtime.State, unit_id: str, attributes: dict, answers) -> tuple[str, ...]:
    """Queue an exposure for every hashed enrolment (never for overrides or fallbacks)."""
    now = None
    items = []
    ids = state.ids.experiments
    for answer in answers:
        if answer.reason == "assigned":
            exp_id, variant_ids = ids[answer.experiment]
            if now is None:
                now = time.time()
            items.append((exp_id, variant_ids[answer.variant], unit_id, now, attributes))
    return exposures.record(items) if items else ()


def _finish(body: dict, state: runtime.State, degraded: tuple[str, ...]) -> Response:
    headers = {"X-Config-Version": state.version}
    if degraded:
        body["degraded"] = list(degraded)
        headers[DEGRADED_HEADER] = ", ".join(degraded)
    return Response(body, headers=headers)


class AssignmentsView(APIView):
    permission_classes = [IsClient]

    @extend_schema(
        operation_id="assignments_create",
        summary="Assign a unit to experiments",
        description=(
            "Deterministic: the same unit, attributes and configuration always get the same "
            "answer, with no stored state. `experiments` omitted means every running experiment. "
            "Enrolled answers (`reason` = `assigned`) are recorded as exposures."
        ),
        request=AssignmentRequestSerializer,
        responses={
            200: AssignmentResponseSerializer,
            400: _BAD_REQUEST,
            413: OpenApiResponse(ErrorSerializer, description="Body over 64 KiB."),
            **_ERRORS,
        },
        tags=["assignment"],
    )
    def post(self, request):
        too_large = _too_large(request)
        if too_large is not None:
            return too_large
        serializer = AssignmentRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        state = runtime.current()
        evaluator = state.evaluator
        keys = data.get("experiments")
        if keys is not None:
            keys = list(dict.fromkeys(keys))
            unknown = [k for k in keys if k not in evaluator]
            if unknown:
                raise ValidationError({"experiments": [
                    "Unknown experiment key(s): " + ", ".join(repr(k) for k in unknown[:20])
                ]})
        unit_id, attributes = data["unit_id"], data["attributes"]
        answers = evaluator.evaluate_many(unit_id, attributes, keys)
        degraded = _record(state, unit_id, attributes, answers)
        body = {"unit_id": unit_id, "assignments": [a.as_dict() for a in answers]}
        return _finish(body, state, degraded)


class ExperimentAssignmentView(APIView):
    permission_classes = [IsClient]

    @extend_schema(
        operation_id="experiment_assignment_retrieve",
        summary="Assign a unit to one experiment",
        description=(
            "`unit_id` is required; every other query parameter is an attribute (a string) "
            "for targeting, e.g. `?unit_id=u-123&country=CN`."
        ),
        parameters=[
            OpenApiParameter(
                "unit_id", OpenApiTypes.STR, OpenApiParameter.QUERY, required=True,
                description="The unit to assign (1-256 characters).",
            ),
            OpenApiParameter(
                "attributes", {
                    "type": "object",
                    "additionalProperties": {"type": "string", "maxLength": 1024},
                    "maxProperties": 100,
                },
                OpenApiParameter.QUERY, required=False, style="form", explode=True,
                description="Any other query parameter is an attribute of the unit.",
            ),
        ],
        responses={
            200: SingleAssignmentResponseSerializer,
            400: _BAD_REQUEST,
            404: OpenApiResponse(ErrorSerializer, description="No experiment with this key."),
            **_ERRORS,
        },
        tags=["assignment"],
    )
    def get(self, request, key: str):
        state = runtime.current()
        if key not in state.evaluator:
            raise NotFound(f"No experiment with key {key!r}.")
        params = request.query_params
        data: dict = {"attributes": {k: v for k, v in params.items() if k != "unit_id"}}
        if "unit_id" in params:
            data["unit_id"] = params["unit_id"]
        serializer = AssignmentRequestSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        unit_id, attributes = serializer.validated_data["unit_id"], serializer.validated_data["attributes"]
        answer = state.evaluator.evaluate(key, unit_id, attributes)
        degraded = _record(state, unit_id, attributes, [answer])
        return _finish({"unit_id": unit_id, **answer.as_dict()}, state, degraded)


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    tags = (t.strip() for t in header.split(","))
    return any(t.removeprefix("W/") == etag for t in tags)


class ConfigView(APIView):
    permission_classes = [IsClient]

    @extend_schema(
        operation_id="config_retrieve",
        summary="Configuration document for local (SDK) assignment",
        description=(
            "Everything needed to assign locally: experiments, salts, weights, allocation, "
            "layers, holdouts, targeting and overrides (see docs/assignment.md). Send the "
            "ETag back in `If-None-Match` to get 304 when nothing changed."
        ),
        parameters=[
            OpenApiParameter(
                "If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                description="ETag of the copy the client holds.",
            ),
        ],
        responses={
            200: ConfigDocumentSerializer,
            304: OpenApiResponse(description="Not modified: the client's copy is current."),
            **_ERRORS,
        },
        tags=["assignment"],
    )
    def get(self, request):
        state = runtime.current()
        header = request.META.get("HTTP_IF_NONE_MATCH")
        if header and _etag_matches(header, state.etag):
            response = HttpResponse(status=status.HTTP_304_NOT_MODIFIED)
        else:
            response = HttpResponse(state.body, content_type="application/json")
        response["ETag"] = state.etag
        response["Cache-Control"] = "no-cache"
        return response
