"""``POST /api/v1/flags/evaluate``: every (or the named) flag for one unit, from the
process-local evaluator (no database once warm), with the rule that decided each.

An experiment rule that decides with an ``assigned`` answer records the exposure through the
same path as ``/assignments``; nothing else records anything.
"""
from __future__ import annotations

from typing import NamedTuple

from drf_spectacular.utils import OpenApiResponse, extend_schema

from access.parsers import parse_json, refuse_non_finite

from . import runtime
from .flag_serializers import (
    FlagEvaluateRequestSerializer,
    FlagEvaluateResponseSerializer,
    parse_flag_request,
)
from .serializers import ErrorSerializer
from .views import _BAD_REQUEST, _ERRORS, _finish, _HotView, _record, _too_large, environment_of

_KNOWN_MEMBERS = frozenset({"unit_id", "attributes", "flags"})


class _Enrolment(NamedTuple):
    """What ``views._record`` reads from an answer: an experiment rule's hashed enrolment."""

    experiment: str
    variant: str
    reason: str = "assigned"


def _json_body(request):
    raw = request._request.body
    if not raw:
        return {}
    data = parse_json(raw)
    if isinstance(data, dict) and not _KNOWN_MEMBERS.issuperset(data):
        # A number beyond a double in an ignored member is refused too, named.
        refuse_non_finite({k: v for k, v in data.items() if k not in _KNOWN_MEMBERS})
    return data


class FlagEvaluateView(_HotView):

    @extend_schema(
        operation_id="flags_evaluate",
        summary="Evaluate feature flags for a unit",
        description=(
            "Deterministic, like assignments: each flag's first matching rule decides its value "
            "(force, listed units, percentage rollout, experiment), else its default. `flags` "
            "omitted means every flag; unknown keys answer `unknown_flag` with value null. An "
            "experiment rule that decides with a hashed enrolment records the exposure."
        ),
        request=FlagEvaluateRequestSerializer,
        responses={
            200: FlagEvaluateResponseSerializer,
            400: _BAD_REQUEST,
            413: OpenApiResponse(ErrorSerializer, description="Body over 64 KiB."),
            **_ERRORS,
        },
        tags=["flags"],
    )
    def post(self, request):
        too_large = _too_large(request)
        if too_large is not None:
            return too_large
        unit_id, attributes, keys = parse_flag_request(_json_body(request))
        state = runtime.current(environment_of(request))
        results = state.evaluator.flags.evaluate_many(unit_id, attributes, keys)
        known = state.ids.experiments
        enrolled = {
            r.experiment: _Enrolment(r.experiment, r.variant) for r in results if r.exposure and r.experiment in known
        }
        degraded = _record(state, unit_id, attributes, enrolled.values()) if enrolled else ()
        body = {
            "unit_id": unit_id,
            "environment": state.document.get("environment", "production"),
            "config_version": state.version,
            "flags": {r.key: r.as_dict() for r in results},
        }
        return _finish(body, state, degraded)
