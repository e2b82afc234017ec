"""Once-per-condition alert states and fanning a fired alert out to subscriptions.

A condition (``key``) of an experiment fires when it goes from clear to active, and again only
after it cleared and came back. The state row is locked (``select_for_update``) while it is
read and changed, so two evaluations on PostgreSQL cannot both fire one condition.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from experiments.models import Experiment

from .models import AlertState, AlertSubscription, Delivery

logger = logging.getLogger(__name__)

TITLES = {
    "srm": "Sample ratio mismatch",
    "guardrail": "Guardrail breached",
    "decision": "Decision reached",
    "overdue": "Experiment overdue",
    "report_failing": "Report computation failing",
    "data_quality": "Exposure data-quality warning",
}


def set_condition(experiment: Experiment, key: str, active: bool, message: str = "") -> bool:
    """Record whether ``key`` holds now; True if it just became active (the alert should fire).

    A new phase (re-randomised, plan changed) starts clean: a condition still active from the
    previous phase fires again if it holds in the new one.
    """
    phase = getattr(experiment, "current_phase", 1) or 1
    with transaction.atomic():
        state = AlertState.objects.select_for_update().filter(experiment=experiment, key=key).first()
        if state is None:
            if not active:
                return False
            # No row to lock yet: of two concurrent first inserts, the unique constraint lets one
            # win; the loser (it waited for the winner's commit) reports "already fired".
            try:
                with transaction.atomic():
                    AlertState.objects.create(experiment=experiment, key=key, active=True, phase=phase,
                                              fired_at=timezone.now(), message=message)
            except IntegrityError:
                return False
            return True
        was_active = state.active and state.phase == phase
        if was_active == active and state.phase == phase:
            return False
        now = timezone.now()
        if state.active and not active:
            state.cleared_at = now
        if active and not was_active:
            state.fired_at, state.message = now, message
        state.active, state.phase = active, phase
        state.save(update_fields=["active", "phase", "fired_at", "cleared_at", "message"])
        return active and not was_active


def clear_others(experiment: Experiment, prefix: str, keep: set[str]) -> None:
    """Clear the active conditions under ``prefix`` that no longer hold."""
    stale = AlertState.objects.filter(experiment=experiment, key__startswith=prefix, active=True).exclude(key__in=keep)
    for key in stale.values_list("key", flat=True):
        set_condition(experiment, key, False)


def alert_payload(experiment: Experiment, key: str, message: str, **extra: Any) -> dict[str, Any]:
    kind = key.split(":", 1)[0]
    return {
        "id": str(uuid.uuid4()),
        "type": "alert",
        "kind": kind,
        "condition": key,
        "title": TITLES.get(kind, kind),
        "experiment": experiment.key,
        "experiment_name": experiment.name,
        "status": experiment.status,
        "message": message,
        "fired_at": timezone.now().isoformat(),
        "action": None,
        **extra,
    }


def fire(experiment: Experiment, payload: dict[str, Any]) -> list[int]:
    """One Delivery per active subscription (the experiment's and the global ones), each sent by
    its own task after the commit: a slow or failing endpoint never holds up the caller."""
    from .tasks import deliver

    subscriptions = AlertSubscription.objects.filter(Q(experiment=experiment) | Q(experiment__isnull=True),
                                                     active=True)
    ids = [Delivery.objects.create(subscription=s, alert_key=payload["condition"], payload=payload).pk
           for s in subscriptions]
    logger.info("alert %s of %s fired to %d subscription(s)", payload["condition"], experiment.key, len(ids))

    def enqueue() -> None:
        for pk in ids:
            try:
                deliver.delay(pk)
            except Exception:  # broker down, or an eager delivery that finally failed: logged only
                logger.exception("could not send delivery %s", pk)

    transaction.on_commit(enqueue)
    return ids
