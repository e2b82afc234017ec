"""Reads of stored report snapshots (the API, the pages and the CSV export share them)."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from experiments.models import Experiment

from .models import ReportSnapshot

#: The history chart needs the shape of the curve, not every 15-minute point.
HISTORY_POINTS = 120


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
                     points: int = HISTORY_POINTS, phase: int | None = None) -> list[dict[str, Any]]:
    """``[{"computed_at", "metrics"}]`` oldest first, thinned to about ``points`` snapshots.

    Only the ``metrics`` part of each payload is loaded, and only for the kept snapshots. One
    phase only (default: the current one): each phase's results start afresh.
    """
    qs = ReportSnapshot.objects.filter(experiment=experiment, phase=phase or experiment.current_phase)
    if until is not None:
        qs = qs.filter(computed_at__lte=until)
    index = list(qs.order_by("computed_at", "id").values_list("id", flat=True))
    if len(index) > points:
        step = (len(index) - 1) / (points - 1)
        index = sorted({index[round(i * step)] for i in range(points)})
    rows = (
        ReportSnapshot.objects.filter(id__in=index)
        .order_by("computed_at", "id")
        .values_list("computed_at", "payload__metrics")
    )
    return [{"computed_at": at, "metrics": metrics or []} for at, metrics in rows]


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
