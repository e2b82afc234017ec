"""Reads of stored report snapshots (the API, the pages and the CSV export share them)."""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Subquery
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from experiments.models import Experiment

from .models import ReportSnapshot

logger = logging.getLogger(__name__)

#: The history chart needs the shape of the curve, not every 15-minute point.
HISTORY_POINTS = 40


def lift_series(body: dict[str, Any]) -> dict[str, Any]:
    """The few numbers the lift-over-time chart needs from one results body, stored with every
    snapshot (``payload["lift_series"]``) so the report page never loads old full payloads:
    ``{"early_look", "metrics": {key: {"name", "variants": {variant: [lift, lo, hi]}}}}`` with
    the *always-valid* interval (never the fixed-horizon one, which invites peeking)."""
    metrics: dict[str, Any] = {}
    for m in body.get("metrics") or []:
        points = {}
        for v in m.get("variants") or []:
            if v.get("is_control") or not v.get("lift"):
                continue
            ci = (v.get("sequential") or {}).get("ci_relative") or [None, None]
            points[str(v.get("variant"))] = [v["lift"].get("relative"), ci[0], ci[1]]
        metrics[str(m.get("metric"))] = {"name": m.get("name"), "variants": points}
    plan = body.get("plan") or {}
    return {"early_look": bool(plan.get("early_look")), "metrics": metrics}


def latest_snapshot(
    experiment: Experiment, *, at: datetime | None = None, phase: int | None = None
) -> ReportSnapshot | None:
    """The newest snapshot of ``experiment``'s ``phase`` (default: the current phase), computed
    at or before ``at`` when given."""
    qs = ReportSnapshot.objects.filter(experiment=experiment, phase=phase or experiment.current_phase)
    if at is not None:
        qs = qs.filter(computed_at__lte=at)
    return qs.order_by("-computed_at", "-id").first()


def snapshot_history(experiment: Experiment, *, until: datetime | None = None,
                     points: int = HISTORY_POINTS, metrics: Sequence[str] | None = None,
                     phase: int | None = None) -> list[dict[str, Any]]:
    """``[{"computed_at", "series"}]`` oldest first, thinned to about ``points`` snapshots.

    Only the compact ``lift_series`` of each kept snapshot is loaded (a few numbers per metric
    and variant), and with ``metrics`` only those metrics' part of it (the database extracts
    them); snapshots stored before it existed fall back to their ``metrics``. One phase only
    (default: the current one): each phase's results start afresh.
    """
    qs = ReportSnapshot.objects.filter(experiment=experiment, phase=phase or experiment.current_phase)
    if until is not None:
        qs = qs.filter(computed_at__lte=until)
    index = list(qs.order_by("computed_at", "id").values_list("id", flat=True))
    if len(index) > points:
        step = (len(index) - 1) / (points - 1)
        index = sorted({index[round(i * step)] for i in range(points)})
    qs = ReportSnapshot.objects.filter(id__in=index).order_by("computed_at", "id")
    if metrics is None:
        rows = list(qs.values_list("id", "computed_at", "payload__lift_series"))
    else:
        series_of = KeyTransform("lift_series", "payload")
        names = {f"m{i}": KeyTransform(str(key), KeyTransform("metrics", series_of)) for i, key in enumerate(metrics)}
        qs = qs.annotate(early=KeyTransform("early_look", series_of), **names)
        rows = []
        for row in qs.values_list("id", "computed_at", "early", *names):
            parts = [json.loads(v) if isinstance(v, str) else v for v in row[3:]]
            present = any(p is not None for p in parts) or row[2] is not None
            series = {"early_look": bool(row[2]),
                      "metrics": {k: p for k, p in zip(metrics, parts, strict=True) if p}} if present else None
            rows.append((row[0], row[1], series))
    old = [pk for pk, _, series in rows if not series]
    legacy = {}
    if old:  # older snapshots: derive the series from their metrics (loaded only for those)
        for pk, metrics in ReportSnapshot.objects.filter(id__in=old).values_list("id", "payload__metrics"):
            if isinstance(metrics, str):
                metrics = json.loads(metrics)
            legacy[pk] = lift_series({"metrics": metrics or []})
    out = []
    for pk, at, series in rows:
        if isinstance(series, str):
            series = json.loads(series)
        out.append({"computed_at": at, "series": series or legacy.get(pk) or {"metrics": {}}})
    return out


def snapshot_times(experiment: Experiment, *, limit: int = 50, phase: int | None = None) -> list[datetime]:
    """When the newest ``limit`` snapshots of a phase were computed (newest first), to pick one."""
    return list(
        ReportSnapshot.objects.filter(experiment=experiment, phase=phase or experiment.current_phase)
        .order_by("-computed_at", "-id")
        .values_list("computed_at", flat=True)[:limit]
    )


def phases(experiment: Experiment) -> list[dict[str, Any]]:
    """The experiment's phases, newest first, each with its number of snapshots."""
    from django.db.models import Count

    counts = dict(
        ReportSnapshot.objects.filter(experiment=experiment).values("phase").annotate(n=Count("id"))
        .values_list("phase", "n")
    )
    rows = experiment.phases.order_by("-number").values(
        "number", "started_at", "ended_at", "reason", "rerandomized", "salt", "created_by"
    )
    return [{**row, "snapshots": counts.get(row["number"], 0)} for row in rows]


def experiments_overview() -> list[dict[str, Any]]:
    """Every experiment but archived ones, with its latest decision (one query)."""
    latest = ReportSnapshot.objects.filter(
        experiment=OuterRef("pk"), phase=OuterRef("current_phase")
    ).order_by("-computed_at", "-id")
    rows = (
        Experiment.objects.exclude(status=Experiment.Status.ARCHIVED)
        .annotate(
            latest_computed_at=Subquery(latest.values("computed_at")[:1]),
            latest_decision=Subquery(latest.values("payload__decision")[:1]),
            latest_srm=Subquery(latest.values("payload__srm__passed")[:1]),
        )
        .order_by("-started_at", "-created_at")
    )
    now = timezone.now()
    out = []
    for e in rows:
        end = e.ended_at or (e.paused_at if e.status == Experiment.Status.PAUSED else None) or now
        days = (end - e.started_at).total_seconds() / 86400 if e.started_at else None
        decision = e.latest_decision
        if isinstance(decision, str):  # a backend may hand the JSON of a subquery back as text
            decision = json.loads(decision)
        out.append({
            "experiment": e,
            "days_running": days,
            "computed_at": e.latest_computed_at,
            "decision": decision or None,
            "srm_passed": e.latest_srm,
        })
    return out


def received_event_names(names: Sequence[str]) -> set[str] | None:
    """Which of ``names`` were ever received, read from the analysis store (Django's database, or
    ClickHouse with ``ANALYTICS_BACKEND=clickhouse``); None when the store cannot answer now.

    The admin warns about metrics whose event never arrived (a typo, a missing integration). In
    ClickHouse mode Django's event table stays empty, so asking it would flag every metric.
    """
    wanted = sorted({n for n in names if n})
    if not wanted:
        return set()
    from . import clickhouse
    from .models import Event

    if not clickhouse.enabled():
        return {n for n in wanted if Event.objects.filter(event=n).exists()}
    from .dialects import DIALECTS

    q = DIALECTS["clickhouse"].quote
    events, _ = clickhouse.tables()
    marks = ", ".join(["%s"] * len(wanted))
    try:  # the event column is LowCardinality: a dictionary scan, milliseconds at 10M rows
        rows = clickhouse.client().query(
            f"SELECT DISTINCT {q('event')} FROM {q(events)} WHERE {q('event')} IN ({marks})",
            parameters=tuple(wanted)).result_rows
    except Exception:  # noqa: BLE001 - unreachable, refused: the warning is advisory, the page must render
        logger.warning("ClickHouse could not say which events were received", exc_info=True)
        return None
    return {row[0] for row in rows}
