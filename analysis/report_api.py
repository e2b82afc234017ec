"""Results API: read report snapshots (JSON or CSV), ask for a recomputation, follow its task,
and plan a test with the sample-size calculator. Mounted under /api/v1/.

The serializers below describe the stored payload for the OpenAPI schema (it is fuzzed, so they
must match what is really sent); the views return the stored payload as it is.
"""
from __future__ import annotations

import math
import re
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from access.permissions import IsAnalyst, IsClient
from experiments.models import Experiment, ExperimentMetric

from . import csv_export, selectors, tasks
from .models import ReportSnapshot
from .reports import ReportError, compute_window
from .stats import StatsInputError, sample_size

# --- response shapes (documentation and contract) -----------------------------------------------

class ResultsErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    hint = serializers.CharField(required=False)


def _float(**kwargs) -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, **kwargs)


def _interval(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=_float(), allow_null=True, min_length=2, max_length=2, **kwargs)


class LiftSerializer(serializers.Serializer):
    absolute = _float()
    relative = _float()
    ci_absolute = _interval()
    ci_relative = _interval()


class VariantResultSerializer(serializers.Serializer):
    variant = serializers.CharField()
    is_control = serializers.BooleanField()
    units = serializers.IntegerField()
    mean = _float()
    status = serializers.CharField()
    mean_adjusted = _float(required=False)
    ci = _interval(required=False, help_text="Quantile metrics: the variant's order-statistic confidence interval.")
    ci_ranks = serializers.ListField(
        child=serializers.IntegerField(), allow_null=True, required=False, min_length=2, max_length=2,
        help_text="Quantile metrics: the ranks of the interval's ends among the variant's units.")
    lift = LiftSerializer(required=False, allow_null=True)
    p_value = _float(required=False)
    p_value_adjusted = _float(required=False)
    significant = serializers.BooleanField(required=False)
    verdict = serializers.CharField(required=False)
    chance_to_beat_control = _float(required=False)
    expected_loss = _float(required=False)
    guardrail_alert = serializers.BooleanField(required=False, help_text="Guardrail harm beyond its margin (breached).")
    non_inferiority = serializers.DictField(
        required=False, help_text="Guardrails: margin, worst/best case, status holds/breached/not_shown, text.")
    early_look = serializers.BooleanField(
        required=False, help_text="Sequential off and the planned size not reached: nothing is called yet.")
    would_be_significant = serializers.BooleanField(
        required=False, help_text="Early looks: what the fixed-horizon test would say at face value.")
    test = serializers.CharField(required=False, help_text="welch_t, two_proportion_z, fisher_exact, quantile_z, ...")
    warnings = serializers.ListField(child=serializers.CharField(), required=False)
    sequential = serializers.DictField(required=False, help_text="Always-valid p-value and intervals (mSPRT).")
    cuped = serializers.DictField(required=False, help_text="Variance reduction with pre-exposure data.")
    reason = serializers.CharField(required=False, allow_null=True)
    sd = _float(required=False)
    credible_interval_relative = _interval(required=False)
    estimator = serializers.CharField(required=False, help_text="cuped or unadjusted.")
    inference = serializers.CharField(required=False, help_text="sequential or fixed_horizon.")
    fixed_horizon = serializers.DictField(required=False, help_text="The fixed-horizon estimate.")
    unadjusted = serializers.DictField(required=False, help_text="The estimate without CUPED.")
    bayesian = serializers.DictField(required=False, help_text="Model, prior and credible level.")


class MetricResultSerializer(serializers.Serializer):
    metric = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    role = serializers.ChoiceField(choices=ExperimentMetric.Role.choices)
    direction = serializers.CharField()
    family = serializers.CharField(required=False, help_text="The multiple-comparisons family.")
    quantile = _float(required=False, help_text="Quantile metrics: the level q (0.9 for p90).")
    quantile_label = serializers.CharField(required=False, help_text='Quantile metrics: "median", "p90", "p99", ...')
    status = serializers.CharField()
    reason = serializers.CharField(required=False, allow_null=True)
    variants = VariantResultSerializer(many=True)


class SrmSerializer(serializers.Serializer):
    p_value = _float()
    passed = serializers.BooleanField()
    counts = serializers.DictField(child=serializers.IntegerField())
    message = serializers.CharField(required=False)
    expected = serializers.DictField(child=serializers.FloatField(), required=False)
    threshold = serializers.FloatField(required=False)
    test = serializers.CharField(required=False)
    chi2 = _float(required=False)
    df = serializers.IntegerField(required=False, allow_null=True)
    checked = serializers.BooleanField(required=False, help_text="False until there are exposures.")


class DecisionSerializer(serializers.Serializer):
    recommendation = serializers.ChoiceField(choices=["ship", "do_not_ship", "keep_running", "invalid_srm"])
    headline = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())
    variant = serializers.CharField(required=False, allow_null=True)
    variants = serializers.ListField(child=serializers.CharField(), required=False)
    early_look = serializers.BooleanField(required=False, help_text="True while nothing may be called yet.")


class PowerSerializer(serializers.Serializer):
    planned_sample_size = serializers.IntegerField(allow_null=True, required=False)
    units_so_far = serializers.IntegerField(required=False)
    progress = _float(required=False)
    days_left = _float(required=False)
    power_reached = _float(required=False)
    mde_reached_relative = _float(required=False)
    daily_units = _float(required=False)
    target_power = _float(required=False)
    alpha_per_comparison = _float(required=False)
    metric = serializers.CharField(required=False, allow_null=True)
    mde_reached_absolute = _float(required=False)
    mde_planned_relative = _float(required=False)


class SegmentVariantSerializer(serializers.Serializer):
    variant = serializers.CharField()
    is_control = serializers.BooleanField(required=False)
    units = serializers.IntegerField()
    mean = _float()
    status = serializers.CharField(required=False)
    lift = LiftSerializer(required=False, allow_null=True)
    p_value = _float(required=False)
    p_value_adjusted = _float(required=False)
    significant = serializers.BooleanField(required=False, allow_null=True)
    chance_to_beat_control = _float(required=False)
    p_value_segments = _float(
        required=False, help_text="Benjamini-Hochberg-adjusted across the segment values shown (per metric and variant).")


class SegmentsInfoSerializer(serializers.Serializer):
    caveat = serializers.CharField(help_text="Segments are exploratory; how p_value_segments is adjusted.")
    dimensions = serializers.ListField(child=serializers.CharField())
    max_segments = serializers.IntegerField(help_text="Values kept per dimension (REPORT_MAX_SEGMENTS); the rest is (other).")
    min_units = serializers.IntegerField(help_text="Smaller values are merged into (other) (REPORT_SEGMENT_MIN_UNITS).")
    notes = serializers.ListField(child=serializers.CharField(), help_text="Breakdowns skipped, and why.")


class SegmentMetricSerializer(serializers.Serializer):
    metric = serializers.CharField()
    name = serializers.CharField(required=False)
    kind = serializers.CharField(required=False)
    role = serializers.ChoiceField(choices=ExperimentMetric.Role.choices, required=False)
    direction = serializers.CharField(required=False)
    status = serializers.CharField()
    variants = SegmentVariantSerializer(many=True)


class DailyExposureSerializer(serializers.Serializer):
    date = serializers.DateField()
    variant = serializers.CharField()
    units = serializers.IntegerField()


class DailyPointSerializer(serializers.Serializer):
    date = serializers.DateField()
    partial = serializers.BooleanField(help_text="True for the day the data stops in, before its end.")
    units = serializers.IntegerField(help_text="Units first exposed by the end of the day (cumulative).")
    value = _float(help_text="The day's increment of the metric per unit exposed by then (ratio: the day's ratio).")
    mean = _float(help_text="Cumulative mean (rate, ratio) as of the end of the day.")
    lift = _float(help_text="Cumulative relative lift vs control (treatments only).")
    ci_relative = _interval()
    lift_absolute = _float()
    ci_absolute = _interval()
    p_value = _float()


class DailyVariantSerializer(serializers.Serializer):
    variant = serializers.CharField()
    is_control = serializers.BooleanField()
    points = DailyPointSerializer(many=True)


class DailyMetricSerializer(serializers.Serializer):
    metric = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    role = serializers.CharField()
    variants = DailyVariantSerializer(many=True)


class DailySeriesSerializer(serializers.Serializer):
    days = serializers.ListField(child=serializers.DateField())
    partial_day = serializers.DateField(allow_null=True)
    omitted_days = serializers.IntegerField(help_text="Earlier days left out (REPORT_DAILY_MAX_DAYS); still cumulated.")
    definition = serializers.CharField(required=False)
    metrics = DailyMetricSerializer(many=True)
    excluded = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="Metrics without a per-day series (quantile metrics: order statistics have no daily increments).")
    error = serializers.CharField(required=False)


class ResultsVariantSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    weight = serializers.FloatField()
    is_control = serializers.BooleanField()


class ComparisonFamilySerializer(serializers.Serializer):
    roles = serializers.ListField(child=serializers.CharField())
    tests = serializers.IntegerField()


class MultipleComparisonsSerializer(serializers.Serializer):
    method = serializers.CharField()
    families = serializers.DictField(child=ComparisonFamilySerializer())


class SdkExposuresSerializer(serializers.Serializer):
    mismatched = serializers.IntegerField(help_text="SDK exposures refused: the server's evaluation of that config version disagreed.")
    stale = serializers.IntegerField(help_text="SDK exposures refused: unknown config version and the current one disagrees.")
    example = serializers.DictField(help_text="The latest refused exposure (no unit id).")


class ResultsSerializer(serializers.Serializer):
    experiment = serializers.CharField()
    experiment_name = serializers.CharField(required=False)
    status = serializers.CharField(required=False, help_text="The experiment's status when computed.")
    variants = ResultsVariantSerializer(many=True, required=False)
    correction = serializers.CharField(required=False, help_text="holm or bh.")
    sequential = serializers.BooleanField(required=False, help_text="Whether always-valid inference is on.")
    cuped = serializers.BooleanField(required=False, help_text="Whether CUPED variance reduction is on.")
    multiple_comparisons = MultipleComparisonsSerializer(required=False)
    snapshot_id = serializers.IntegerField(
        allow_null=True, help_text="Null for a date range (?from=/?to=): computed on demand, not stored.")
    computed_at = serializers.DateTimeField()
    data_from = serializers.DateTimeField(allow_null=True)
    data_to = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField()
    control = serializers.CharField()
    alpha = serializers.FloatField()
    srm = SrmSerializer()
    metrics = MetricResultSerializer(many=True)
    power = PowerSerializer()
    plan = serializers.DictField(
        required=False, help_text="Planned size/duration, progress, reached, early_look (see docs/statistics.md).")
    decision = DecisionSerializer()
    segments = serializers.DictField(
        child=serializers.DictField(child=SegmentMetricSerializer(many=True)),
        help_text="dimension (a unit attribute, or audience:<key> with values member/non-member) -> value -> "
                  "per-metric summaries (every metric).",
    )
    segments_info = SegmentsInfoSerializer(required=False, allow_null=True)
    daily_exposures = DailyExposureSerializer(many=True)
    daily_series = DailySeriesSerializer(
        required=False, help_text="Per-day series of every metric and variant: the day's value and the cumulative "
                                  "estimate with its interval (see docs).")
    phase = serializers.IntegerField(required=False, help_text="The experiment phase analysed.")
    phase_started_at = serializers.DateTimeField(required=False, allow_null=True)
    phase_ended_at = serializers.DateTimeField(required=False, allow_null=True)
    notes = serializers.ListField(child=serializers.CharField(), required=False)
    window = serializers.DictField(
        required=False, help_text="With ?from=/?to=: the range analysed, {from, to} (RFC 3339, to exclusive).")
    sdk_exposures = SdkExposuresSerializer(
        required=False, help_text="Data quality: SDK exposures refused (never part of the analysis).")


class RefreshSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    experiment = serializers.CharField()
    state = serializers.CharField()
    deduplicated = serializers.BooleanField(help_text="True when a computation was already pending.")
    status_url = serializers.CharField()
    results_url = serializers.CharField()


class TaskStatusSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    state = serializers.CharField(help_text="Celery state: PENDING, STARTED, RETRY, SUCCESS or FAILURE.")
    ready = serializers.BooleanField()
    experiment = serializers.CharField(allow_null=True)
    outcome = serializers.CharField(
        allow_null=True, help_text="computed, skipped (another run was in progress), already_computed or missing."
    )
    snapshot_id = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True)


class StrictBooleanField(serializers.BooleanField):
    """Only ``true`` or ``false``: the schema says boolean, so 'yes', 'on' or '1' are refused."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if isinstance(data, str) and data in ("true", "false"):
            return data == "true"
        self.fail("invalid", input=data)


#: Inputs beyond this magnitude overflow the arithmetic (and mean nothing as business numbers).
MAX_MAGNITUDE = 1e12


class SampleSizeQuerySerializer(serializers.Serializer):
    baseline = serializers.FloatField(
        min_value=-MAX_MAGNITUDE, max_value=MAX_MAGNITUDE,
        help_text="Control conversion rate (0-1), or the control mean with sd.")
    mde = serializers.FloatField(
        min_value=-MAX_MAGNITUDE, max_value=MAX_MAGNITUDE,
        help_text="Minimum detectable effect; relative (0.05 = +5 %) unless relative=false.")
    alpha = serializers.FloatField(default=0.05, min_value=0, max_value=1, help_text="Significance level (0-1).")
    power = serializers.FloatField(default=0.8, min_value=0, max_value=1, help_text="Target power (0-1).")
    relative = StrictBooleanField(default=True, help_text="true: mde is relative to the baseline.")
    sd = serializers.FloatField(required=False, min_value=0, max_value=MAX_MAGNITUDE,
                                help_text="Per-unit standard deviation (mean metrics).")
    n_variants = serializers.IntegerField(default=2, min_value=2, max_value=1000, help_text="Variants incl. control.")


class SampleSizeSerializer(serializers.Serializer):
    per_variant = serializers.IntegerField()
    total = serializers.IntegerField()
    n_variants = serializers.IntegerField()
    metric_type = serializers.CharField()
    baseline = serializers.FloatField()
    target = serializers.FloatField()
    mde = serializers.FloatField()
    relative = serializers.BooleanField()
    mde_absolute = serializers.FloatField()
    mde_relative = _float()
    sd = _float()
    alpha = serializers.FloatField()
    alpha_per_comparison = serializers.FloatField()
    power = serializers.FloatField()
    effect_size = serializers.FloatField()
    method = serializers.CharField()


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    text = {
        400: "Invalid input; the body names the field.",
        401: "Missing or invalid API key.",
        403: "The key lacks the needed scope.",
        404: "Unknown experiment, or no report yet (see hint).",
        429: "Rate limit exceeded.",
        503: "The task queue or the database is unavailable; retry later.",
    }
    return {
        code: OpenApiResponse(OpenApiTypes.OBJECT if code == 400 else ResultsErrorSerializer, description=text[code])
        for code in codes
    }


PHASE_PARAM = OpenApiParameter(
    "phase", OpenApiTypes.INT, required=False,
    description="The experiment phase whose results to read (default: the current phase). Each phase "
                "has its own frozen plan, exposures and reports.",
)
AT_PARAM = OpenApiParameter(
    "at", OpenApiTypes.STR, required=False,
    description="Latest snapshot computed at or before this RFC 3339 timestamp with a time zone, e.g. "
                "2025-01-31T12:00:00Z, or date (YYYY-MM-DD: the end of that day, UTC) (default: the latest).",
)
FROM_PARAM = OpenApiParameter(
    "from", OpenApiTypes.STR, required=False,
    description="Analyse a date range on demand (not stored): only units first exposed at or after this "
                "date (YYYY-MM-DD: 00:00 UTC) or RFC 3339 timestamp, and their events. Not with `at`.",
)
TO_PARAM = OpenApiParameter(
    "to", OpenApiTypes.STR, required=False,
    description="End of the range (exclusive for a timestamp; a date YYYY-MM-DD includes that whole day, "
                "UTC): only exposures and events before it. Not with `at`.",
)


# --- helpers --------------------------------------------------------------------------------------

AT_FORMAT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


DATE_FORMAT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_instant(raw: str | None, *, day_end: bool = False) -> datetime | None:
    """A date (YYYY-MM-DD, UTC) or an RFC 3339 timestamp; ValueError when present but invalid.

    A date means its start (00:00 UTC), or with ``day_end`` the start of the next day (the caller
    treats it as exclusive, so the whole day is included).
    """
    if raw is not None and DATE_FORMAT.fullmatch(raw):
        try:
            day = datetime.combine(datetime.strptime(raw, "%Y-%m-%d").date(), time(), tzinfo=UTC)
            return day + timedelta(days=1) if day_end else day
        except (ValueError, OverflowError):
            raise ValueError("Enter a date YYYY-MM-DD or an RFC 3339 timestamp with a time zone, "
                             "e.g. 2025-01-31T12:00:00Z.") from None
    try:
        return parse_at(raw)
    except ValueError:
        raise ValueError("Enter a date YYYY-MM-DD or an RFC 3339 timestamp with a time zone, "
                         "e.g. 2025-01-31T12:00:00Z.") from None


def parse_at(raw: str | None) -> datetime | None:
    """The ``at`` query parameter (RFC 3339, as documented); ValueError when present but invalid."""
    if raw is None:
        return None
    text = raw
    if re.fullmatch(r"[0-9-]+[Tt][0-9:.]+ [0-9]{2}:[0-9]{2}", text):
        text = text[:-6] + "+" + text[-5:]  # an unencoded '+' of the offset arrives as a space
    value = None
    if AT_FORMAT.fullmatch(text):
        try:
            value = datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(UTC)
        except (ValueError, OverflowError):
            value = None
    if value is None:
        raise ValueError("Enter an RFC 3339 timestamp with a time zone, e.g. 2025-01-31T12:00:00Z.")
    return value


def _dt(value: datetime | None) -> str | None:
    return serializers.DateTimeField().to_representation(value) if value else None


def results_body(snapshot: ReportSnapshot) -> dict[str, Any]:
    """The API representation of a snapshot: its payload plus the snapshot's own fields."""
    body = dict(snapshot.payload)
    body.pop("lift_series", None)  # the report page's compact chart data, not part of the results
    body.setdefault("segments", {})
    body.setdefault("daily_exposures", [])
    body.update(
        snapshot_id=snapshot.pk,
        computed_at=_dt(snapshot.computed_at),
        data_from=_dt(snapshot.data_from),
        data_to=_dt(snapshot.data_to),
        duration_ms=snapshot.duration_ms,
    )
    return body


def parse_phase(experiment: Experiment, raw: str | None) -> int:
    """The ``phase`` query parameter: 1 .. the current phase (default); ValueError otherwise."""
    if raw is None:
        return experiment.current_phase
    if not re.fullmatch(r"[0-9]{1,5}", raw) or not 1 <= int(raw) <= experiment.current_phase:
        raise ValueError(
            f"Enter a phase number from 1 to {experiment.current_phase} (the current phase of '{experiment.key}')."
        )
    return int(raw)


def unknown_params(query, allowed: set[str]) -> dict | None:
    """A 400 body naming the query parameters an endpoint does not know (None when all are known):
    a misspelt ``?form=`` must not silently answer for the whole experiment."""
    unknown = sorted(set(query) - allowed)
    if not unknown:
        return None
    known = ", ".join(sorted(allowed)) or "none"
    return {**{name: ["Unknown query parameter."] for name in unknown},
            "detail": f"Unknown query parameter(s): {', '.join(unknown)}. Known: {known}."}


def parse_at_or_date(raw: str | None) -> datetime | None:
    """``at``: a timestamp, or a date meaning the end of that day (UTC, inclusive)."""
    if raw is not None and DATE_FORMAT.fullmatch(raw):
        end = parse_instant(raw, day_end=True)
        return end - timedelta(microseconds=1)
    return parse_at(raw)


def parse_window(query) -> tuple[datetime | None, datetime | None, bool]:
    """(from, to, asked) of ``?from=``/``?to=``; ValueError naming the parameter when invalid."""
    raw_from, raw_to = query.get("from"), query.get("to")
    if raw_from is None and raw_to is None:
        return None, None, False
    if query.get("at") is not None:
        raise ValueError("at: Use either at (a stored snapshot) or from/to (a range computed on demand), not both.")
    try:
        since = parse_instant(raw_from)
    except ValueError as exc:
        raise ValueError(f"from: {exc}") from None
    try:
        until = parse_instant(raw_to, day_end=True)
    except ValueError as exc:
        raise ValueError(f"to: {exc}") from None
    if since is not None and until is not None and until <= since:
        raise ValueError("to: The end of the range must be after its start.")
    return since, until, True


def results_for(experiment: Experiment, query) -> tuple[dict | ReportSnapshot | None, dict | None, int]:
    """The results endpoints' answer: a snapshot, or for ``?from=``/``?to=`` a body computed on
    demand (nothing stored), else (None, error body, status)."""
    try:
        since, until, asked = parse_window(query)
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        return None, {field: [message], "detail": str(exc)}, 400
    if not asked:
        return find_snapshot(experiment, query.get("at"), query.get("phase"))
    try:
        phase = parse_phase(experiment, query.get("phase"))
    except ValueError as exc:
        return None, {"phase": [str(exc)], "detail": f"phase: {exc}"}, 400
    if experiment.started_at is None:
        return None, {"detail": f"'{experiment.key}' has not started: there is no data to analyse."}, 404
    started = datetime.now(UTC)
    try:
        body = compute_window(experiment, since=since, until=until, phase=phase)
    except ReportError as exc:
        return None, {"detail": str(exc)}, 404
    body.setdefault("segments", {})
    body.setdefault("daily_exposures", [])
    body.update(snapshot_id=None, duration_ms=int((datetime.now(UTC) - started).total_seconds() * 1000),
                window={"from": _dt(since), "to": _dt(until)})
    return body, None, 200


def find_snapshot(
    experiment: Experiment, raw_at: str | None, raw_phase: str | None = None
) -> tuple[ReportSnapshot | None, dict | None, int]:
    """(snapshot, error body, status) for the results endpoints and the pages' JSON export."""
    try:
        phase = parse_phase(experiment, raw_phase)
    except ValueError as exc:
        return None, {"phase": [str(exc)], "detail": f"phase: {exc}"}, 400
    try:
        at = parse_at_or_date(raw_at)
    except ValueError as exc:
        return None, {"at": [str(exc)], "detail": f"at: {exc}"}, 400
    snapshot = selectors.latest_snapshot(experiment, at=at, phase=phase)
    if snapshot is None:
        refresh = f"/api/v1/experiments/{experiment.key}/results/refresh"
        of = f"phase {phase} of '{experiment.key}'" if experiment.current_phase > 1 else f"'{experiment.key}'"
        detail = (f"No report of {of} was computed at or before {raw_at}."
                  if at else f"No report of {of} has been computed yet.")
        if phase != experiment.current_phase:
            refresh += f"?phase={phase}"
        return None, {"detail": detail, "hint": f"POST {refresh} to compute one."}, 404
    return snapshot, None, 200


class _AnalystView(APIView):
    permission_classes = [IsAnalyst]


# --- views ------------------------------------------------------------------------------------------

class ResultsView(_AnalystView):
    @extend_schema(
        operation_id="experiment_results",
        summary="Latest results of an experiment",
        parameters=[AT_PARAM, PHASE_PARAM, FROM_PARAM, TO_PARAM],
        responses={200: ResultsSerializer, **_errors(400, 401, 403, 404, 429)},
        tags=["results"],
    )
    def get(self, request, key: str):
        if error := unknown_params(request.query_params, RESULTS_PARAMS):
            return Response(error, status=status.HTTP_400_BAD_REQUEST)
        experiment = get_object_or_404(Experiment, key=key)
        found, error, code = results_for(experiment, request.query_params)
        if found is None:
            return Response(error, status=code)
        return Response(found if isinstance(found, dict) else results_body(found))


class _JSONOnlyNegotiation:
    """Errors are JSON whatever the Accept header; success is the CSV response itself."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = api_settings.DEFAULT_RENDERER_CLASSES[0]()
        return renderer, renderer.media_type


class ResultsCSVView(_AnalystView):
    content_negotiation_class = _JSONOnlyNegotiation

    @extend_schema(
        operation_id="experiment_results_csv",
        summary="Latest results as CSV (one row per metric x variant, then segment rows)",
        parameters=[AT_PARAM, PHASE_PARAM, FROM_PARAM, TO_PARAM],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="RFC 4180 CSV with a header row."),
            **_errors(400, 401, 403, 404, 429),
        },
        tags=["results"],
    )
    def get(self, request, key: str):
        if error := unknown_params(request.query_params, RESULTS_PARAMS):
            return Response(error, status=status.HTTP_400_BAD_REQUEST)
        experiment = get_object_or_404(Experiment, key=key)
        found, error, code = results_for(experiment, request.query_params)
        if found is None:
            return Response(error, status=code)
        if isinstance(found, dict):
            return window_csv_response(experiment, found)
        return csv_response(found)


#: The query parameters of the results endpoints (JSON and CSV) and the pages' exports.
RESULTS_PARAMS = {"at", "phase", "from", "to"}


def csv_response(snapshot: ReportSnapshot) -> HttpResponse:
    text = csv_export.to_csv(snapshot.payload, computed_at=_dt(snapshot.computed_at))
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    name = csv_export.filename(snapshot.experiment.key, snapshot.computed_at)
    if snapshot.phase > 1:
        name = name.replace("-results-", f"-phase{snapshot.phase}-results-")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def window_csv_response(experiment: Experiment, body: dict[str, Any]) -> HttpResponse:
    """CSV of a date range computed on demand (its file name says the range)."""
    text = csv_export.to_csv(body, computed_at=body.get("computed_at"))
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    window = body.get("window") or {}
    part = "-".join(re.sub(r"[^0-9]", "", v or "")[:8] or "open" for v in (window.get("from"), window.get("to")))
    phase = f"-phase{body['phase']}" if body.get("phase", 1) > 1 else ""
    response["Content-Disposition"] = f'attachment; filename="{experiment.key}{phase}-results-{part}.csv"'
    return response


class RefreshView(_AnalystView):
    @extend_schema(
        operation_id="experiment_results_refresh",
        summary="Recompute an experiment's results now",
        description="Answers 202 with the id of the task computing the report; follow it with "
                    "GET /api/v1/tasks/{id}. A refresh while one is pending returns the pending task. "
                    "`?phase=` recomputes an earlier phase (with its frozen plan, data up to its end).",
        parameters=[PHASE_PARAM],
        request=None,
        responses={202: RefreshSerializer, **_errors(400, 401, 403, 404, 429, 503)},
        tags=["results"],
    )
    def post(self, request, key: str):
        if error := unknown_params(request.query_params, {"phase"}):
            return Response(error, status=status.HTTP_400_BAD_REQUEST)
        experiment = get_object_or_404(Experiment, key=key)
        try:
            phase = parse_phase(experiment, request.query_params.get("phase"))
        except ValueError as exc:
            return Response({"phase": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        try:
            ticket = tasks.request_refresh(experiment, phase=phase)
        except tasks.QueueUnavailable:
            return Response({"detail": "The task queue is unavailable; retry later."},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"})
        body = {
            "task_id": ticket.task_id,
            "experiment": experiment.key,
            "state": ticket.state,
            "deduplicated": ticket.deduplicated,
            "status_url": reverse("report-task-status", args=[ticket.task_id]),
            "results_url": reverse("experiment-results", args=[experiment.key]),
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


class TaskStatusView(_AnalystView):
    @extend_schema(
        operation_id="report_task_status",
        summary="State of a report computation",
        responses={200: TaskStatusSerializer, **_errors(401, 403, 404, 429)},
        tags=["results"],
    )
    def get(self, request, task_id: str):
        if error := unknown_params(request.query_params, set()):
            return Response(error, status=status.HTTP_400_BAD_REQUEST)
        body = tasks.task_status(task_id)
        if body is None:
            return Response({"detail": "Unknown task id."}, status=status.HTTP_404_NOT_FOUND)
        return Response(body)


class SampleSizeView(APIView):
    permission_classes = [IsClient]

    @extend_schema(
        operation_id="sample_size",
        summary="Units needed to detect an effect",
        parameters=[SampleSizeQuerySerializer],
        responses={200: SampleSizeSerializer, **_errors(400, 401, 403, 429)},
        tags=["results"],
    )
    def get(self, request):
        if error := unknown_params(request.query_params, set(SampleSizeQuerySerializer().fields)):
            return Response(error, status=status.HTTP_400_BAD_REQUEST)
        # A plain dict: as a QueryDict a missing boolean would read as False, not its default.
        query = SampleSizeQuerySerializer(data=request.query_params.dict())
        if not query.is_valid():
            return Response(query.errors, status=status.HTTP_400_BAD_REQUEST)
        try:
            body = sample_size(**query.validated_data)
        except StatsInputError as exc:
            return Response({exc.field: [exc.message]}, status=status.HTTP_400_BAD_REQUEST)
        if not all(math.isfinite(v) for v in body.values() if isinstance(v, float)):
            return Response({"mde": ["The inputs are too extreme to compute a sample size."]},
                            status=status.HTTP_400_BAD_REQUEST)
        return Response(body)


urlpatterns = [
    path("experiments/<slug:key>/results", ResultsView.as_view(), name="experiment-results"),
    path("experiments/<slug:key>/results.csv", ResultsCSVView.as_view(), name="experiment-results-csv"),
    path("experiments/<slug:key>/results/refresh", RefreshView.as_view(), name="experiment-results-refresh"),
    path("tasks/<str:task_id>", TaskStatusView.as_view(), name="report-task-status"),
    path("sample-size", SampleSizeView.as_view(), name="sample-size"),
]
