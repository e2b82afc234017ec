"""REST endpoints for outcomes: batch event ingestion and erasure of a unit's data.

The views are thin: DRF parses and checks the envelope, ``analysis.ingestion`` validates each
event by hand and writes the batch in bulk, ``analysis.privacy`` erases.
"""
from __future__ import annotations

from django.conf import settings
from django.urls import path, register_converter
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.limits import body_too_large
from access.parsers import SafeJSONParser, refuse_non_finite
from access.permissions import IsAdmin, IsClient
from assignment.serializers import ErrorSerializer  # the shared "Error" component
from experiments.models import EVENT_NAME_VALIDATOR

from . import ingestion, privacy, stream

# --- serializers -------------------------------------------------------------------------------


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "maxProperties": ingestion.MAX_PROPERTIES,
        "additionalProperties": {
            "anyOf": [
                {"type": "string", "maxLength": ingestion.MAX_PROPERTY_STRING_LENGTH},
                {"type": "number"},
                {"type": "boolean"},
            ],
            "nullable": True,
        },
        "description": (
            "A flat object: at most 50 properties of scalar values (strings up to 1,024 "
            "characters, finite numbers, booleans, null); at most 8 KiB as JSON. Null or "
            "omitted: no properties."
        ),
    }
)
class _PropertiesField(serializers.DictField):
    pass


class EventSerializer(serializers.Serializer):
    """One event. Documentation only: events are validated by ``analysis.ingestion``."""

    event_id = serializers.CharField(
        max_length=ingestion.MAX_ID_LENGTH,
        help_text=(
            "Chosen by the client and unique: an event sent again is stored once. Prefer "
            "time-ordered ids (UUIDv7, ULID): on a large table they keep ingestion about twice "
            "as fast as random UUIDv4 (docs/scaling.md)."
        ),
    )
    unit_id = serializers.CharField(max_length=ingestion.MAX_ID_LENGTH)
    event = serializers.CharField(max_length=128, validators=[EVENT_NAME_VALIDATOR])
    value = serializers.FloatField(
        required=False, allow_null=True, min_value=-ingestion.MAX_EVENT_VALUE, max_value=ingestion.MAX_EVENT_VALUE,
        help_text="Optional finite number, e.g. revenue; at most 1e15 in magnitude.",
    )
    timestamp = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text=(
            "When it happened (ISO 8601; without an offset UTC is assumed; null or omitted: "
            "now). "
            "From 2000-01-01 to at most a day in the future."
        ),
    )
    properties = _PropertiesField(required=False)


class _EventListField(serializers.ListField):
    """A list of at most MAX_BATCH items, passed on untouched: no serializer runs per event.

    ``child`` and ``max_length`` are declared for the OpenAPI schema only.
    """

    default_error_messages = {
        "not_a_list": "Expected a list of events.",
        "max_length": "At most {max_length} events per batch.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list")
        if len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return data

    def to_representation(self, value):
        return value


class EventBatchSerializer(serializers.Serializer):
    events = _EventListField(
        child=EventSerializer(),
        max_length=ingestion.MAX_BATCH,
        help_text=(
            f"Up to {ingestion.MAX_BATCH} events. Each is validated on its own: invalid ones are "
            "listed under `rejected` in the answer and the valid ones are stored."
        )
    )


class RejectedEventSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the event in the batch (from 0).")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field name -> messages.",
    )


class EventBatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Events stored by this request.")
    duplicates = serializers.IntegerField(
        help_text=(
            "Events whose event_id was already stored or came earlier in this batch. With "
            "ANALYTICS_BACKEND=clickhouse only repeats within the batch are known here; repeats "
            "of earlier batches are accepted and read once."
        )
    )
    rejected = RejectedEventSerializer(many=True)


class ErasureCountsSerializer(serializers.Serializer):
    events = serializers.IntegerField()
    exposures = serializers.IntegerField()
    overrides = serializers.IntegerField()


class ErasureSerializer(serializers.Serializer):
    unit_id = serializers.CharField()
    deleted = ErasureCountsSerializer()


class _BatchJSONParser(SafeJSONParser):
    """Batches are read like every other body (``access.parsers``: strict JSON, bounded depth,
    at most ``API_MAX_BODY_BYTES``); the view checks the declared size before reading. Numbers
    inside the list of events are checked per event by ``analysis.ingestion``, which rejects only
    the event holding one; anywhere else they are refused here, like in any other body."""

    finite_numbers = False

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if isinstance(data, dict) and isinstance(data.get("events"), list):
            refuse_non_finite({k: v for k, v in data.items() if k != "events"})
        else:
            refuse_non_finite(data)
        return data


# --- views -------------------------------------------------------------------------------------

_NOT_A_BATCH = OpenApiResponse(
    OpenApiTypes.OBJECT, description="Not a batch; each key names a field and lists its errors."
)
_BAD_UNIT = OpenApiResponse(OpenApiTypes.OBJECT, description="An impossible unit id (`unit_id`).")


def _stream_unavailable(exc: stream.StreamError) -> Response:
    """503 with Retry-After: the event stream (ANALYTICS_BACKEND=clickhouse) is full or down."""
    return Response({"detail": f"{exc}; retry later."}, status=status.HTTP_503_SERVICE_UNAVAILABLE,
                    headers={"Retry-After": str(exc.retry_after)})


def _max_body() -> int:
    return int(getattr(settings, "API_MAX_BODY_BYTES", 2 * 1024 * 1024))


class EventBatchView(APIView):
    permission_classes = [IsClient]
    parser_classes = [_BatchJSONParser]

    @extend_schema(
        operation_id="events_create",
        summary="Send a batch of events",
        description=(
            "Idempotent: `event_id` identifies an event, so a retried batch is stored once and "
            "its events count as `duplicates`. Valid events are stored even when others in the "
            "batch are rejected; every event is either accepted, a duplicate, or listed under "
            "`rejected` with the reason."
        ),
        request=EventBatchSerializer,
        responses={
            202: EventBatchResultSerializer,
            400: _NOT_A_BATCH,
            413: OpenApiResponse(ErrorSerializer, description="Body over API_MAX_BODY_BYTES (2 MiB)."),
            415: OpenApiResponse(ErrorSerializer, description="The body is not JSON."),
        },
        examples=[
            OpenApiExample(
                "Two events",
                request_only=True,
                value={"events": [
                    {"event_id": "7b0c9e0e-1", "unit_id": "u-123", "event": "purchase",
                     "value": 42.5, "timestamp": "2026-11-24T10:00:00Z",
                     "properties": {"currency": "EUR"}},
                    {"event_id": "7b0c9e0e-2", "unit_id": "u-123", "event": "page_view"},
                ]},
            ),
        ],
        tags=["events"],
    )
    def post(self, request):
        too_large = body_too_large(request, _max_body())
        if too_large is not None:
            return too_large
        serializer = EventBatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = ingestion.ingest_events(serializer.validated_data["events"])
        except stream.StreamError as exc:
            return _stream_unavailable(exc)
        return Response(result.as_dict(), status=status.HTTP_202_ACCEPTED)


class UnitErasureView(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(
        operation_id="units_destroy",
        summary="Erase everything recorded about a unit",
        description=(
            "Deletes the unit's events, exposures (including buffered ones) and overrides with "
            "their history, and answers how many rows were deleted. The next report no longer "
            "counts the unit. `unit_id` is URL-encoded and may contain any character."
        ),
        parameters=[
            OpenApiParameter(
                "unit_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                description="The unit to erase (1-256 characters, URL-encoded).",
            ),
        ],
        responses={200: ErasureSerializer, 400: _BAD_UNIT},  # 401/403/429/503: access.schema
        tags=["privacy"],
    )
    def delete(self, request, unit_id: str):
        if len(unit_id) > ingestion.MAX_ID_LENGTH:
            return Response(
                {"unit_id": [f"At most {ingestion.MAX_ID_LENGTH} characters."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        if not ingestion.text_ok(unit_id):
            return Response({"unit_id": [ingestion.BAD_TEXT]}, status=status.HTTP_400_BAD_REQUEST)
        try:
            deleted = privacy.erase_unit(unit_id)
        except stream.StreamError as exc:  # nothing is silently kept: the erasure is retried
            return _stream_unavailable(exc)
        return Response({"unit_id": unit_id, "deleted": deleted})


class _UnitIdConverter:
    """Django's ``path`` converter, newlines included: the assignment API takes any text as a
    unit id, so erasure must reach an id holding ``\n`` too (``path`` answered 404)."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(_UnitIdConverter, "unit_id")

urlpatterns = [
    path("events", EventBatchView.as_view(), name="events"),
    path("units/<unit_id:unit_id>", UnitErasureView.as_view(), name="unit-erasure"),
]
