"""The report compute service: aggregate in SQL, run the statistics engine, store a snapshot.

One call of :func:`compute_report` reads everything it needs first and writes a single
``ReportSnapshot`` row in one transaction at the very end, so a computation that dies half-way
(a killed worker, a database error) leaves nothing behind and can simply run again. Locking
(never twice at once for one experiment) and retries belong to the Celery task
(``analysis.tasks``); this module is plain Django and callable from anywhere (the admin, tests,
``seed_demo``).
"""
from __future__ import annotations

import logging
import os
import time
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from assignment.selectors import sdk_exposure_checks
from experiments.models import Experiment, ExperimentMetric, Metric, Phase

from .models import ReportSnapshot
from .segments import breakdowns, segment_attributes  # noqa: F401 - segment_attributes: public here too
from .selectors import lift_series
from .stats import MetricInput, StatsInputError, VariantStats, analyze_experiment

logger = logging.getLogger(__name__)

#: Test-only hook: seconds to sleep inside the write transaction, after the snapshot row is
#: inserted and before it is committed, so a test can kill a worker mid-computation.
TEST_DELAY_ENV = "REPORT_TEST_DELAY_SECONDS"
class ReportError(Exception):
    """The experiment cannot be analysed as configured (e.g. it has no control variant)."""


def _queries():
    # Imported lazily: the SQL aggregation module is owned by another part of the app.
    from . import queries

    return queries


def _flush_exposures() -> None:
    """Write buffered exposures first so the report includes the latest units."""
    from assignment.services import flush_exposures

    flush_exposures()


def _metric_input(em: ExperimentMetric, per_variant: dict[str, VariantStats]) -> MetricInput:
    m = em.metric
    return MetricInput(
        key=m.key, name=m.name, kind=m.kind, role=em.role, direction=m.direction,
        variants={str(k): v for k, v in (per_variant or {}).items()},
        non_inferiority_margin=em.non_inferiority_margin,
        quantile=float(m.quantile) if m.kind == Metric.Kind.QUANTILE and m.quantile is not None else None,
    )


def _iso(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


def _day(value: Any) -> str:
    return value.isoformat()[:10] if hasattr(value, "isoformat") else str(value)[:10]


def _daily_units(counts: dict[str, int], start: datetime | None, end: datetime) -> float | None:
    """Average units a day since the start (at least one day), for the days-left estimate."""
    total = sum(counts.values())
    if start is None or total == 0 or end <= start:
        return None
    days = max(1.0, (end - start).total_seconds() / 86400.0)
    return total / days


def _plan_window(
    experiment: Experiment, until: datetime, start: datetime | None = None
) -> dict[str, float | None]:
    """Planned duration and the days elapsed by ``until`` since ``start`` (the phase's start,
    else the experiment's): the plan may be a duration, and each phase runs its own plan."""
    start = start or experiment.started_at
    elapsed = None
    if start is not None:
        elapsed = max(0.0, (until - start).total_seconds() / 86400.0)
    return {"planned_duration_days": experiment.planned_duration_days, "elapsed_days": elapsed}


def _test_delay() -> None:
    raw = os.environ.get(TEST_DELAY_ENV, "")
    try:
        seconds = float(raw) if raw else 0.0
    except ValueError:
        seconds = 0.0
    if seconds > 0:
        logger.warning("%s=%s: sleeping inside the snapshot transaction", TEST_DELAY_ENV, raw)
        time.sleep(seconds)


def _daily_series(experiment: Experiment, *, until: datetime, common: dict[str, Any], ems: list, variants: list,
                  phase: int | None, since: datetime | None) -> dict[str, Any]:
    """Per-day series of every metric (``analysis.daily``); a failure costs only this block."""
    from .daily import daily_series

    try:
        return daily_series(experiment, until=until, common=common, metric_links=list(ems),
                            variant_keys={v.pk: v.key for v in variants},
                            planned_sample_size=experiment.planned_sample_size, phase=phase, since=since)
    except Exception:  # noqa: BLE001 - the report itself must still be stored
        logger.exception("daily series of %s could not be computed", experiment.key)
        return {"days": [], "partial_day": None, "omitted_days": 0, "metrics": [], "error": "not computed"}


def _apply_frozen_plan(experiment: Experiment, plan: dict[str, Any]) -> None:
    """Analyse an ended phase with the plan it had (in memory only; nothing is saved)."""
    from experiments.plan import PLAN_FIELDS

    for field in PLAN_FIELDS:
        if field in plan:
            setattr(experiment, field, plan[field])
    rows = [row for row in plan.get("metrics") or [] if isinstance(row, dict)]
    metrics = Metric.objects.in_bulk([row.get("metric") for row in rows], field_name="key")
    experiment.frozen_metric_links = [
        ExperimentMetric(experiment=experiment, metric=metrics[row["metric"]], role=row.get("role", "primary"), position=i)
        for i, row in enumerate(rows) if row.get("metric") in metrics
    ]
    experiment.frozen_variant_weights = {
        str(v["key"]): float(v["weight"]) for v in plan.get("variants") or [] if isinstance(v, dict)
    }


def _phase_of(experiment: Experiment, number: int | None) -> Phase | None:
    """The phase analysed (default: the current one); None for an experiment never started."""
    number = number or experiment.current_phase
    phase = experiment.phases.filter(number=number).first()
    if phase is None and number != experiment.current_phase:
        raise ReportError(f"Experiment '{experiment.key}' has no phase {number}.")
    return phase


def build_payload(
    experiment: Experiment, *, until: datetime, include_segments: bool = True, phase: Phase | None = None,
    since: datetime | None = None, audiences: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Aggregate and analyse ``experiment`` with data up to ``until``; returns the JSON payload.

    With ``phase``, only that phase's exposures count and, for an ended phase, its frozen plan
    (metrics and roles, alpha, correction, weights, ...) is used. With ``since``, only units first
    exposed at or after it count (a date range; see ``compute_window``). ``audiences`` (saved
    audience definitions as dicts, ``analysis.segments``) add ``audience:<key>`` breakdowns.
    """
    number = phase.number if phase is not None else None
    notes: list[str] = []
    if phase is not None and phase.number != experiment.current_phase:
        _apply_frozen_plan(experiment, phase.plan or {})
    if phase is not None and phase.number > 1 and not phase.rerandomized and experiment.cuped:
        # Units kept their variants: their pre-exposure data was treated in the previous phase,
        # so it is not a treatment-free covariate (CUPED would remove part of the effect).
        experiment.cuped = False
        notes.append(f"CUPED is not applied in phase {phase.number}: it was not re-randomised, so the "
                     f"pre-period of its units overlaps the treatment of the previous phase.")
    weights = getattr(experiment, "frozen_variant_weights", None)
    variants = [v for v in experiment.variants.all() if weights is None or v.key in weights]
    for v in variants:
        if weights is not None:
            v.weight = weights[v.key]
    control = next((v for v in variants if v.is_control), None)
    if control is None:
        raise ReportError(f"Experiment '{experiment.key}' has no control variant.")
    ems = getattr(experiment, "frozen_metric_links", None)
    if ems is None:
        ems = list(experiment.experiment_metrics.select_related("metric"))
    queries = _queries()
    stats = queries.metric_statistics(experiment, until=until, phase=number, since=since)
    counts = {str(k): int(v)
              for k, v in queries.exposure_counts(experiment, until=until, phase=number, since=since).items()}
    if weights is not None:
        counts = {k: v for k, v in counts.items() if k in weights}
    for v in variants:
        counts.setdefault(v.key, 0)
    common = {
        "experiment": experiment.key,
        "control": control.key,
        "weights": {v.key: float(v.weight) for v in variants},
        "alpha": experiment.significance_level,
        "correction": experiment.correction,
        "sequential": experiment.sequential_testing,
        "cuped": experiment.cuped,
        "power": getattr(settings, "REPORT_TARGET_POWER", 0.8),
    }
    try:
        body = analyze_experiment(
            metrics=[_metric_input(em, stats.get(em.metric.key, {})) for em in ems],
            exposure_counts=counts,
            planned_sample_size=experiment.planned_sample_size,
            daily_units=_daily_units(counts, max(filter(None, [
                phase.started_at if phase else experiment.started_at, since]), default=None), until),
            **_plan_window(experiment, until, phase.started_at if phase else None),
            **common,
        )
    except StatsInputError as exc:
        raise ReportError(str(exc)) from exc
    segments, segments_info = {}, None
    if include_segments:
        segments, segments_info = breakdowns(experiment, list(ems), common, until, phase=number, since=since,
                                             audiences=audiences or [], metric_input=_metric_input)
    daily = [
        {"date": _day(row["date"]), "variant": str(row["variant"]), "units": int(row["units"])}
        for row in queries.daily_exposures(experiment, phase=number, since=since, until=until)
        if weights is None or str(row["variant"]) in weights
    ]
    until_day = until.date().isoformat()
    body.update(
        experiment_name=experiment.name,
        status=experiment.status,
        variants=[
            {"key": v.key, "name": v.name, "weight": float(v.weight), "is_control": v.is_control}
            for v in variants
        ],
        segments=segments,
        segments_info=segments_info,
        daily_series=_daily_series(experiment, until=until, common=common, ems=ems, variants=variants,
                                   phase=number, since=since),
        lift_series=lift_series(body),
        daily_exposures=[row for row in daily if row["date"] <= until_day],
        phase=number or 1,
        phase_started_at=_iso(phase.started_at) if phase else None,
        phase_ended_at=_iso(phase.ended_at) if phase else None,
        # Data quality: SDK exposures the server refused (never counted above).
        sdk_exposures=sdk_exposure_checks(experiment.pk, until=until),
    )
    if notes:
        body["notes"] = notes
    return body


def compute_report(
    experiment: Experiment | str,
    *,
    until: datetime | None = None,
    task_id: str = "",
    include_segments: bool = True,
    flush: bool = True,
    phase: int | None = None,
    audiences: list[dict[str, Any]] | None = None,
) -> ReportSnapshot:
    """Compute and store one snapshot of ``experiment`` (a model or its key).

    ``until`` limits the data (default: now) and becomes the snapshot's ``computed_at`` and
    ``data_to``, which lets ``seed_demo`` backfill a history. Everything is read before the
    single-row write, done in one transaction. ``phase`` (default: the current one) selects
    the phase analysed; an ended phase's data stops at its end.
    """
    started = time.monotonic()
    key = experiment if isinstance(experiment, str) else experiment.key
    experiment = Experiment.objects.prefetch_related("variants", "targeting_rules").get(key=key)
    if flush:
        _flush_exposures()
    until = until or timezone.now()
    phase_row = _phase_of(experiment, phase)
    if phase_row is not None and phase_row.ended_at is not None and until > phase_row.ended_at:
        until = phase_row.ended_at
    payload = build_payload(experiment, until=until, include_segments=include_segments, phase=phase_row,
                            audiences=audiences)
    start = phase_row.started_at if phase_row is not None else experiment.started_at
    data_from = start if start and start <= until else None
    payload.update(computed_at=_iso(until), data_from=_iso(data_from), data_to=_iso(until))
    with transaction.atomic():
        snapshot = ReportSnapshot.objects.create(
            experiment=experiment,
            computed_at=until,
            data_from=data_from,
            data_to=until,
            task_id=task_id or "",
            duration_ms=int((time.monotonic() - started) * 1000),
            payload=payload,
            phase=payload["phase"],
        )
        _test_delay()
    logger.info("report of %s computed in %d ms (task %s)", key, snapshot.duration_ms, task_id or "-")
    return snapshot


def compute_window(
    experiment: Experiment | str, *, since: datetime | None, until: datetime | None, phase: int | None = None,
) -> dict[str, Any]:
    """Analyse a date range on demand (``?from=``/``?to=``): units first exposed in
    ``[since, until)`` and their events before ``until``. Nothing is stored: a range is a
    question, not a snapshot of the experiment, so it never shows up as the latest report.
    """
    key = experiment if isinstance(experiment, str) else experiment.key
    experiment = Experiment.objects.prefetch_related("variants", "targeting_rules").get(key=key)
    _flush_exposures()
    now = timezone.now()
    until = min(until, now) if until else now
    phase_row = _phase_of(experiment, phase)
    if phase_row is not None and phase_row.ended_at is not None and until > phase_row.ended_at:
        until = phase_row.ended_at
    start = phase_row.started_at if phase_row is not None else experiment.started_at
    if since is not None and (start is None or since > start):
        start = since
    payload = build_payload(experiment, until=until, phase=phase_row, since=since)
    payload.pop("lift_series", None)
    payload.update(computed_at=_iso(now), data_from=_iso(start if start and start <= until else None),
                   data_to=_iso(until))
    return payload


def backfill_daily(experiment: Experiment, *, days: int, end: datetime | None = None) -> int:
    """Store one snapshot per past day (data up to that day's end), for a history to chart.

    Used by ``seed_demo`` so a new user sees how results moved; segments are skipped for speed.
    """
    end = end or timezone.now()
    start = experiment.started_at or end - timedelta(days=days)
    made = 0
    for i in range(1, days + 1):
        cutoff = start + timedelta(days=i)
        if cutoff >= end:
            break
        compute_report(experiment, until=cutoff, include_segments=False, flush=False)
        made += 1
    return made
