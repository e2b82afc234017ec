"""Reads owned by the assignment app, for other apps (the report) to call."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Sum

from .models import ExposureCheck


def sdk_exposure_checks(experiment_id: int, *, until: datetime | None = None) -> dict[str, Any]:
    """SDK exposures of ``experiment_id`` the server refused because its own evaluation
    disagreed (``POST /api/v1/exposures``): counts and the latest example. Never part of the
    analysis; the report shows them as a data-quality warning."""
    rows = ExposureCheck.objects.filter(experiment_id=experiment_id)
    if until is not None:
        rows = rows.filter(created_at__lte=until)
    totals = rows.aggregate(mismatched=Sum("mismatched"), stale=Sum("stale"))
    latest = rows.order_by("-created_at", "-pk").values_list("example", flat=True).first()
    return {
        "mismatched": int(totals["mismatched"] or 0),
        "stale": int(totals["stale"] or 0),
        "example": latest or {},
    }
