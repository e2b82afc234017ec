"""The assignment API: thin views over the process-local evaluator (no database once warm)."""
from __future__ import annotations

import json
import time

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from access.limits import body_too_large
from access.models import Scope
from access.parsers import parse_json, refuse_non_finite
from access.permissions import IsClient

from . import exposures, runtime
from .evaluator import Assignment
from .serializers import (
    MAX_ATTRIBUTE_STRING,
    MAX_ATTRIBUTES,
    MAX_UNIT_ID,
    NO_NUL,
    AssignmentRequestSerializer,
    AssignmentResponseSerializer,
    ConfigDocumentSerializer,
    ErrorSerializer,
    SingleAssignmentResponseSerializer,
    parse_assignment_request,
)

DEGRADED_HEADER = "X-Degraded"
#: The reason given for a key the configuration does not hold (never recorded as an exposure).
UNKNOWN_EXPERIMENT = "unknown_experiment"

#: 401, 403 and 429 are documented for every operation by ``access.schema``.
_ERRORS = {
    503: OpenApiResponse(ErrorSerializer, description="Configuration could not be loaded."),
}
_BAD_REQUEST = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Invalid input; each key names a field and lists its errors.",
)


def environment_of(request) -> str:
    """The environment whose configuration answers ``request``: its API key's, else production
    (keys without one, session users)."""
    return getattr(request.user, "environment", None) or "production"


def _max_body() -> int:
    return getattr(settings, "ASSIGNMENT_MAX_BODY_BYTES", 64 * 1024)


def _too_large(request) -> Response | None:
    return body_too_large(request, _max_body())


def _record(state: runtime.State, unit_id: str, attributes: dict, answers) -> tuple[str, ...]:
    """Queue an exposure for every hashed enrolment (never for overrides or fallbacks)."""
    now = None
    items = []
    ids = state.ids.experiments
    phases = state.ids.phases
    for answer in answers:
        if answer.reason == "assigned":
            exp_id, variant_ids = ids[answer.experiment]
            if now is None:
                now = time.time()
            items.append((exp_id, variant_ids[answer.variant], unit_id, now, attributes,
                          phases.get(answer.experiment, 1)))
    return exposures.record(items) if items else ()


def _finish(body: dict, state: runtime.State, degraded: tuple[str, ...]) -> HttpResponse:
    # Rendered here rather than by DRF's renderer machinery: this is the hot path.
    if degraded:
        body["degraded"] = list(degraded)
    response = HttpResponse(_encoder.encode(body).encode(), content_type="application/json")
    response["X-Config-Version"] = state.version
    if degraded:
        response[DEGRADED_HEADER] = ", ".join(degraded)
    return response


class JSONOnlyNegotiation(BaseContentNegotiation):
    """The API speaks JSON only; skipping Accept-header parsing saves a chunk of every request."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class StrictJSONParser(JSONParser):
    """DRF's JSON parser minus per-request set-up: strict JSON (no NaN, bounded depth) through
    ``access.jsonsafety``; the view checks the size before reading."""

    def parse(self, stream, media_type=None, parser_context=None):
        return parse_json(stream.read())


def _json_body(request):
    """The body as JSON, read straight from Django's request (DRF's data machinery is the
    single most expensive step of this endpoint); any content type is read as JSON."""
    raw = request._request.body
    if not raw:
        return {}
    data = parse_json(raw)
    if isinstance(data, dict) and not _KNOWN_MEMBERS.issuperset(data):
        # A number beyond a double in a member the view ignores is refused too (a 400 naming
        # it); the known members are validated, with their names, by the serializer.
        refuse_non_finite({k: v for k, v in data.items() if k not in _KNOWN_MEMBERS})
    return data


_KNOWN_MEMBERS = frozenset({"unit_id", "attributes", "experiments"})


class _HotView(APIView):
    """DRF view trimmed for the hot path: auth, permissions and throttles as usual, no
    Accept-header negotiation, no Vary header (the answer is JSON whatever the Accept)."""

    permission_classes = [IsClient]
    content_negotiation_class = JSONOnlyNegotiation
    parser_classes = [StrictJSONParser]

    @property
    def default_response_headers(self):
        allow = self.__class__.__dict__.get("_allow")
        if allow is None:
            allow = ", ".join(self.allowed_methods)
            type(self)._allow = allow
        return {"Allow": allow}


class AssignmentsView(_HotView):

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
        unit_id, attributes, keys = parse_assignment_request(_json_body(request))
        state = runtime.current(environment_of(request))
        evaluator = state.evaluator
        if keys is not None:
            keys = list(dict.fromkeys(keys))
        if keys is not None and any(k not in evaluator for k in keys):
            answers = _with_unknown(evaluator, unit_id, attributes, keys)
        else:
            answers = evaluator.evaluate_many(unit_id, attributes, keys)
        degraded = _record(state, unit_id, attributes, answers)
        body = {"unit_id": unit_id, "assignments": [a.as_dict() for a in answers]}
        return _finish(body, state, degraded)


def _with_unknown(evaluator, unit_id: str, attributes: dict, keys: list[str]) -> list[Assignment]:
    """Answers in request order; a key the configuration lacks gets ``unknown_experiment``
    (no variant, no payload) instead of failing the whole request."""
    known = [k for k in keys if k in evaluator]
    answers = dict(zip(known, evaluator.evaluate_many(unit_id, attributes, known), strict=True))
    return [
        answers.get(k) or Assignment(k, None, False, UNKNOWN_EXPERIMENT, "no experiment with this key", {})
        for k in keys
    ]


class ExperimentAssignmentView(_HotView):

    @extend_schema(
        operation_id="experiment_assignment_retrieve",
        summary="Assign a unit to one experiment",
        description=(
            "`unit_id` is required; every other query parameter is an attribute (a string) "
            "for targeting, e.g. `?unit_id=u-123&country=CN`."
        ),
        parameters=[
            OpenApiParameter(
                "unit_id",
                {"type": "string", "minLength": 1, "maxLength": MAX_UNIT_ID, "pattern": NO_NUL},
                OpenApiParameter.QUERY, required=True,
                description="The unit to assign (1-256 characters), hashed exactly as given.",
            ),
            OpenApiParameter(
                "attributes", {
                    "type": "object",
                    "additionalProperties": {
                        "type": "string", "maxLength": MAX_ATTRIBUTE_STRING, "pattern": NO_NUL,
                    },
                    "maxProperties": MAX_ATTRIBUTES,
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
        state = runtime.current(environment_of(request))
        if key not in state.evaluator:
            raise NotFound(f"No experiment with key {key!r}.")
        params = request.query_params
        data: dict = {"attributes": {k: v for k, v in params.items() if k != "unit_id"}}
        if "unit_id" in params:
            data["unit_id"] = params["unit_id"]
        unit_id, attributes, _ = parse_assignment_request(data)
        answer = state.evaluator.evaluate(key, unit_id, attributes)
        degraded = _record(state, unit_id, attributes, [answer])
        return _finish({"unit_id": unit_id, **answer.as_dict()}, state, degraded)


def _wants_full(request) -> bool:
    """``?full=true`` asks for the full document (drafts, raw override unit ids): admin keys only."""
    raw = request.query_params.get("full")
    if raw is None:
        return False
    if raw.lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise ValidationError({"full": ["Must be true or false."]})
    if raw.lower() in ("0", "false", "no"):
        return False
    if getattr(request.user, "scope", None) != Scope.ADMIN:
        raise PermissionDenied("Only admin keys may read the full configuration document.")
    return True


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    tags = (t.strip() for t in header.split(","))
    return any(t.removeprefix("W/") == etag for t in tags)


class ConfigView(_HotView):

    @extend_schema(
        operation_id="config_retrieve",
        summary="Configuration document for local (SDK) assignment",
        description=(
            "Everything needed to assign locally: experiments, salts, weights, allocation, "
            "layers, holdouts, targeting and overrides (see docs/assignment.md). Client-safe by "
            "default: running and paused experiments, shipped variants, hashed QA overrides. "
            "Send the ETag back in `If-None-Match` to get 304 when nothing changed."
        ),
        parameters=[
            OpenApiParameter(
                "If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                description="ETag of the copy the client holds.",
            ),
            OpenApiParameter(
                "full", OpenApiTypes.BOOL, OpenApiParameter.QUERY, required=False,
                description=(
                    "Admin keys only: the full document (drafts, raw override unit ids) instead "
                    "of the client-safe one (section 7a)."
                ),
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
        state = runtime.current(environment_of(request))
        if _wants_full(request):
            body, etag = state.body, state.etag
        else:
            body, etag = state.client_body, state.client_etag
        header = request.META.get("HTTP_IF_NONE_MATCH")
        if header and _etag_matches(header, etag):
            response = HttpResponse(status=status.HTTP_304_NOT_MODIFIED)
        else:
            response = HttpResponse(body, content_type="application/json")
        response["ETag"] = etag
        response["Cache-Control"] = "no-cache"
        return response
