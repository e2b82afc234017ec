"""What happens after every report computation: evaluate the conditions, guard, alert.

Connected to ``analysis.signals`` in ``apps.py``; analysis sends with ``send_robust`` and these
functions log their own errors too, so nothing here can fail a report.
"""
from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from experiments import services
from experiments.models import Experiment

from . import conditions
from .alerts import alert_payload, clear_others, fire, set_condition
from .models import ExperimentAutomation

logger = logging.getLogger(__name__)


def _failures_threshold() -> int:
    return max(1, int(getattr(settings, "ALERT_REPORT_FAILURES", 3)))


def guard(experiment: Experiment, why: str) -> str | None:
    """Pause a guarded running experiment; returns the action taken (or None)."""
    guarded = ExperimentAutomation.objects.filter(experiment=experiment, guarded=True).exists()
    if not guarded or experiment.status != Experiment.Status.RUNNING:
        return None
    try:
        services.pause_experiment(experiment, actor=f"automation: {why}")
    except Exception:  # e.g. paused by a person in between (the transition check refuses)
        logger.exception("guard could not pause %s", experiment.key)
        return None
    logger.warning("guard paused %s: %s", experiment.key, why)
    return "paused"


def evaluate(experiment: Experiment, payload: dict[str, Any], *, snapshot_id: int | None = None) -> list[str]:
    """Update every report condition of ``experiment``; fire (and guard) those that just began.

    Returns the keys that fired.
    """
    fired: list[tuple[str, str, str | None]] = []  # key, message, guard reason

    srm = conditions.srm(payload)
    if set_condition(experiment, "srm", srm is not None, srm or ""):
        fired.append(("srm", srm, "SRM detected"))

    breached = conditions.guardrails(payload)
    clear_others(experiment, "guardrail:", set(breached))
    for key, message in breached.items():
        if set_condition(experiment, key, True, message):
            fired.append((key, message, f"guardrail {key.split(':')[1]} breached"))

    decided = conditions.decision(payload, bool(breached))
    clear_others(experiment, "decision:", {decided[0]} if decided else set())
    if decided and set_condition(experiment, decided[0], True, decided[1]):
        fired.append((decided[0], decided[1], None))

    quality = conditions.data_quality(payload)
    if set_condition(experiment, "data_quality", quality is not None, quality or ""):
        fired.append(("data_quality", quality, None))

    for key, message, reason in fired:
        action = guard(experiment, reason) if reason else None
        if action:
            experiment.refresh_from_db(fields=["status"])
        fire(experiment, alert_payload(experiment, key, message, action=action, snapshot_id=snapshot_id))
    return [key for key, _, _ in fired]


def on_report_computed(sender: Any = None, experiment: Experiment | None = None, snapshot: Any = None,
                       phase: int | None = None, **kwargs: Any) -> None:
    """``analysis.signals.report_computed``: reset the failure count, evaluate the snapshot.

    The final report of an earlier phase (``phase`` given) says nothing about what runs now.
    """
    if phase is not None:
        return
    try:
        experiment = Experiment.objects.get(pk=experiment.pk)
        ExperimentAutomation.objects.filter(experiment=experiment).update(report_failures=0)
        set_condition(experiment, "report_failing", False)
        with transaction.atomic():
            evaluate(experiment, snapshot.payload, snapshot_id=snapshot.pk)
    except Exception:
        logger.exception("alert evaluation failed for %s", getattr(experiment, "key", experiment))


def on_report_failed(sender: Any = None, experiment: Experiment | None = None, error: str = "",
                     phase: int | None = None, **kwargs: Any) -> None:
    """``analysis.signals.report_failed``: alert after N consecutive failures (current phase)."""
    if phase is not None:
        return
    try:
        experiment = Experiment.objects.get(pk=experiment.pk)
        settings_row, _ = ExperimentAutomation.objects.get_or_create(experiment=experiment)
        ExperimentAutomation.objects.filter(pk=settings_row.pk).update(report_failures=F("report_failures") + 1)
        settings_row.refresh_from_db(fields=["report_failures"])
        count = settings_row.report_failures
        if count >= _failures_threshold():
            message = f"The report failed {count} times in a row; last error: {error}"
            with transaction.atomic():
                if set_condition(experiment, "report_failing", True, message):
                    fire(experiment, alert_payload(experiment, "report_failing", message))
    except Exception:
        logger.exception("report failure bookkeeping failed for %s", getattr(experiment, "key", experiment))
