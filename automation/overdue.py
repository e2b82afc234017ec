"""Experiments running past their planned duration without a decision (checked by beat)."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from analysis.models import ReportSnapshot
from experiments.models import Experiment

from .alerts import alert_payload, fire, set_condition
from .models import AlertState

logger = logging.getLogger(__name__)
DECIDED = {"ship", "do_not_ship"}


def check_overdue(now: datetime | None = None) -> list[str]:
    """Fire ``overdue`` for running experiments past ``started_at + planned_duration_days`` whose
    latest report has no decision; clear it once they decide or stop running. Returns the fired keys."""
    now = now or timezone.now()
    fired = []
    for experiment in Experiment.objects.filter(status=Experiment.Status.RUNNING, started_at__isnull=False,
                                                planned_duration_days__isnull=False):
        try:
            due = experiment.started_at + timedelta(days=experiment.planned_duration_days)
            latest = (ReportSnapshot.objects.filter(experiment=experiment, phase=experiment.current_phase)
                      .order_by("-computed_at")
                      .values_list("payload", flat=True).first()) or {}
            decided = (latest.get("decision") or {}).get("recommendation") in DECIDED
            overdue = now > due and not decided
            message = (f"Running since {experiment.started_at:%Y-%m-%d}, planned for "
                       f"{experiment.planned_duration_days} days, and no decision yet.")
            with transaction.atomic():
                if set_condition(experiment, "overdue", overdue, message if overdue else ""):
                    fire(experiment, alert_payload(experiment, "overdue", message))
                    fired.append(experiment.key)
        except Exception:
            logger.exception("overdue check failed for %s", experiment.key)
    stopped = AlertState.objects.filter(key="overdue", active=True).exclude(experiment__status=Experiment.Status.RUNNING)
    for state in stopped.select_related("experiment"):
        set_condition(state.experiment, "overdue", False)  # paused or finished: no longer overdue
    return fired
