"""``POST /api/v1/exposures``: exposures from SDKs that assign locally (docs/assignment.md, 10b).

Each exposure is checked by evaluating it again on the server, against the configuration
version the SDK names when this process still knows it (``runtime.for_version``), else against
the current one. Only exposures the server agrees with (reason ``assigned``, same variant) are
queued, through the same buffer as the server's own answers (``exposures.record``), so the
first exposure per experiment and unit wins and retries are harmless. Disagreements are
rejected by index and counted per experiment (``ExposureCheck``), which the report shows as a
data-quality warning: a broken or stale SDK never silently mixes units into the analysis.
"""
from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access import jsonsafety
from access.authentication import APIKeyUser
from access.keycache import lookup
from access.limits import body_too_large
from access.parsers import parse_json, refuse_non_finite
from access.permissions import IsClient

from . import exposures, runtime
from .models import ExposureCheck
from .views import environment_of

MAX_BATCH = 1000
MAX_VERSION = 64
MAX_AGE = timedelta(days=30)
MAX_AHEAD = timedelta(days=1)


def _body(request) -> Any:
    """The JSON body, decoded once per request (authentication may need it first)."""
    django_request = getattr(request, "_request", request)
    cached = getattr(django_request, "_exposure_json", None)
    if cached is None:
        raw = django_request.body
        # Strict JSON (no NaN, bounded depth, numbers within a double): access.parsers.
        cached = parse_json(raw) if raw else {}
        django_request._exposure_json = cached
    return cached


def body_key_user(request) -> tuple[APIKeyUser, Any] | None:
    """The key as ``api_key`` in the body: ``navigator.sendBeacon`` cannot set headers.

    Only on this endpoint, only when no ``Authorization`` header is sent; same checks as the
    header (``access.authentication``). Not an authentication class, so the OpenAPI schema
    keeps one security scheme (the header)."""
    if request.META.get("HTTP_AUTHORIZATION"):
        return None
    if body_too_large(request, _max_body()) is not None:
        return None  # the view answers 413
    body = _body(request)
    raw = body.get("api_key") if isinstance(body, dict) else None
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise exceptions.AuthenticationFailed("api_key must be a non-empty string.")
    record = lookup(raw)
    if record is None:
        raise exceptions.AuthenticationFailed("Invalid API key.")
    if record.revoked:
        raise exceptions.AuthenticationFailed("This API key has been revoked.")
    if record.expired:
        raise exceptions.AuthenticationFailed("This API key has expired.")
    return APIKeyUser(record), record


def _max_body() -> int:
    return int(getattr(settings, "API_MAX_BODY_BYTES", 2 * 1024 * 1024))


# --- documentation shapes ------------------------------------------------------------------------

class ExposureSerializer(serializers.Serializer):
    experiment = serializers.CharField(help_text="Experiment key.")
    variant = serializers.CharField(help_text="The variant the SDK assigned.")
    unit_id = serializers.CharField(max_length=256)
    timestamp = serializers.DateTimeField(
        required=False, allow_null=True,
        help_text="When the SDK assigned (ISO 8601; no offset means UTC; omitted: now). At most "
                  "30 days old and 1 day ahead; a time ahead of the server's clock counts as now.",
    )
    attributes = serializers.DictField(required=False, help_text="The attributes the SDK evaluated with.")
    config_version = serializers.CharField(
        required=False, allow_null=True, max_length=MAX_VERSION,
        help_text="`version` of the configuration document the SDK evaluated with.",
    )


class ExposureBatchSerializer(serializers.Serializer):
    exposures = ExposureSerializer(many=True, help_text=f"At most {MAX_BATCH}.")
    api_key = serializers.CharField(
        required=False, help_text="Only for navigator.sendBeacon, which cannot send headers."
    )


class ExposureRejectedSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class ExposureResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Exposures queued for recording.")
    rejected = ExposureRejectedSerializer(many=True)
    mismatched = serializers.IntegerField(
        help_text="Rejected because the server's evaluation under the named version disagrees."
    )
    stale = serializers.IntegerField(
        help_text="Rejected because the version is unknown here and the current configuration disagrees."
    )
    degraded = serializers.ListField(child=serializers.CharField(), required=False)


# --- validation ----------------------------------------------------------------------------------

def _timestamp(value: Any, now: datetime) -> tuple[float | None, str | None]:
    if value is None:
        return now.timestamp(), None
    if not isinstance(value, str):
        return None, "Expected an ISO 8601 string."
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None, "Not an ISO 8601 date-time."
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed < now - MAX_AGE:
        return None, "Older than 30 days."
    if parsed > now + MAX_AHEAD:
        return None, "More than a day in the future."
    return min(parsed, now).timestamp(), None


def _validate(item: Any, now: datetime) -> tuple[dict | None, dict[str, list[str]] | None]:
    from .serializers import parse_assignment_request

    if not isinstance(item, dict):
        return None, {"non_field_errors": ["Expected an object."]}
    errors: dict[str, list[str]] = {}
    for name in ("experiment", "variant"):
        value = item.get(name)
        if not isinstance(value, str) or not value or len(value) > 256:
            errors[name] = ["A non-empty string (at most 256 characters) is required."]
    version = item.get("config_version")
    if version is not None and (not isinstance(version, str) or len(version) > MAX_VERSION):
        errors["config_version"] = [f"A string of at most {MAX_VERSION} characters, or null."]
    ts, message = _timestamp(item.get("timestamp"), now)
    if message:
        errors["timestamp"] = [message]
    request = {"attributes": item.get("attributes") or {}}
    if "unit_id" in item:
        request["unit_id"] = item["unit_id"]
    try:
        unit_id, attributes, _ = parse_assignment_request(request)
    except exceptions.ValidationError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        errors.update({k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in detail.items()})
        unit_id = attributes = None
    if errors:
        return None, errors
    return {"experiment": item["experiment"], "variant": item["variant"], "unit_id": unit_id,
            "attributes": attributes, "ts": ts, "version": version}, None


def check_and_record(items: list[Any], now: datetime | None = None, environment: str = "production") -> dict[str, Any]:
    """Validate, re-evaluate and queue a batch; the answer of ``POST /api/v1/exposures``."""
    now = now or datetime.now(UTC)
    current = runtime.current(environment)
    rejected: list[dict] = []
    queued: list[exposures.Item] = []
    counts: dict[int, Counter] = {}
    examples: dict[int, dict] = {}
    for index, item in enumerate(items):
        # Attributes are checked by their validator (which names the attribute); elsewhere,
        # including fields this endpoint ignores, a number beyond a double rejects the item.
        rest = {k: v for k, v in item.items() if k != "attributes"} if isinstance(item, dict) else item
        where = jsonsafety.non_finite_path(rest)
        if where is not None:
            rejected.append({"index": index, "errors": {where or "non_field_errors": [jsonsafety.NOT_FINITE]}})
            continue
        exposure, errors = _validate(item, now)
        if errors:
            rejected.append({"index": index, "errors": errors})
            continue
        named = runtime.for_version(exposure["version"])
        state = named or current
        key = exposure["experiment"]
        if key not in state.evaluator or key not in state.ids.experiments:
            rejected.append({"index": index, "errors": {"experiment": [f"Unknown experiment {key!r}."]}})
            continue
        answer = state.evaluator.evaluate(key, exposure["unit_id"], exposure["attributes"])
        exp_id, variant_ids = state.ids.experiments[key]
        if answer.reason != "assigned" or answer.variant != exposure["variant"]:
            kind = "mismatched" if named is not None else "stale"
            counts.setdefault(exp_id, Counter())[kind] += 1
            examples.setdefault(exp_id, {
                "sdk_variant": exposure["variant"], "server_variant": answer.variant,
                "server_reason": answer.reason, "config_version": exposure["version"], "kind": kind,
            })
            rejected.append({"index": index, "errors": {"variant": [
                f"The server assigns {answer.variant!r} ({answer.reason}) under configuration "
                f"{state.version if named is None else exposure['version']!r}; not recorded ({kind})."
            ]}})
            continue
        item = (exp_id, variant_ids[answer.variant], exposure["unit_id"], exposure["ts"],
                exposure["attributes"])
        # The phase comes from the configuration the exposure was checked against (when the
        # server records phases), never from the SDK's word.
        phases = getattr(state.ids, "phases", None)
        if phases and key in phases:
            item = (*item, phases[key])
        queued.append(item)
    if counts:
        ExposureCheck.objects.bulk_create([
            ExposureCheck(experiment_id=exp_id, mismatched=c["mismatched"], stale=c["stale"],
                          example=examples[exp_id])
            for exp_id, c in counts.items()
        ])
    degraded = exposures.record(queued) if queued else ()
    result: dict[str, Any] = {
        "accepted": len(queued), "rejected": rejected,
        "mismatched": sum(c["mismatched"] for c in counts.values()),
        "stale": sum(c["stale"] for c in counts.values()),
    }
    if degraded:
        result["degraded"] = list(degraded)
    return result


class ExposureBatchView(APIView):
    permission_classes = [IsClient]

    def perform_authentication(self, request) -> None:
        found = body_key_user(request)
        if found is not None:
            request.user, request.auth = found
            return
        super().perform_authentication(request)

    @extend_schema(
        operation_id="exposures_create",
        summary="Report exposures from an SDK that assigns locally",
        description=(
            "Up to 1,000 exposures. Each is re-evaluated by the server against the configuration "
            "version it names (or the current one when that version is no longer known): those "
            "the server agrees with are recorded (the first exposure per experiment and unit "
            "wins, so retries are harmless); the others are listed under `rejected` by index, "
            "counted as `mismatched`/`stale` and shown as a data-quality warning on the report. "
            "The body may be sent as text/plain (navigator.sendBeacon) with the key in `api_key`."
        ),
        request=ExposureBatchSerializer,
        responses={
            202: ExposureResultSerializer,
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="Not a batch; keys name the fields."),
            413: OpenApiResponse(OpenApiTypes.OBJECT, description="Body over API_MAX_BODY_BYTES (2 MiB)."),
        },
        examples=[OpenApiExample("One exposure", request_only=True, value={"exposures": [{
            "experiment": "checkout-button", "variant": "green", "unit_id": "u-123",
            "timestamp": "2026-11-24T10:00:00Z", "attributes": {"country": "CN"},
            "config_version": "3f1c0d9b2a7e4c5d6e7f",
        }]})],
        tags=["assignment"],
    )
    def post(self, request):
        too_large = body_too_large(request, _max_body())
        if too_large is not None:
            return too_large
        body = _body(request)
        if not isinstance(body, dict):
            return Response({"non_field_errors": ["Expected an object with `exposures`."]},
                            status=status.HTTP_400_BAD_REQUEST)
        items = body.get("exposures")
        if not isinstance(items, list):
            return Response({"exposures": ["Expected a list of exposures."]}, status=status.HTTP_400_BAD_REQUEST)
        if len(items) > MAX_BATCH:
            return Response({"exposures": [f"At most {MAX_BATCH} exposures per batch."]},
                            status=status.HTTP_400_BAD_REQUEST)
        # Numbers beyond a double: outside the list the whole body is refused; inside, the
        # exposure holding one is (by index, in check_and_record).
        refuse_non_finite({k: v for k, v in body.items() if k != "exposures"})
        return Response(check_and_record(items, environment=environment_of(request)), status=status.HTTP_202_ACCEPTED)
