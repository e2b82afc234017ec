"""Scheduled changes (start, pause, resume, complete, set_traffic) and ramps.

``run_due`` takes one due action at a time with ``select_for_update(skip_locked=True)``: on
PostgreSQL a second beat/worker process running at the same moment skips the locked row and
takes the next one, so no action runs twice. Each change goes through ``experiments.services``
inside a savepoint: a step that is no longer valid is skipped with its reason, never half-applied.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from experiments import services
from experiments.models import Experiment

from .models import ScheduledAction

logger = logging.getLogger(__name__)
Action, Status = ScheduledAction.Action, ScheduledAction.Status


def schedule_ramp(experiment: Experiment, steps: Iterable[tuple[datetime, Decimal | float | int]],
                  *, user=None) -> list[ScheduledAction]:
    """A ramp: one ``set_traffic`` action per ``(run_at, percent)`` step; percents must grow."""
    steps = sorted(steps, key=lambda s: s[0])
    values = [Decimal(str(v)) for _, v in steps]
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValidationError({"steps": "A ramp's traffic must grow at every step."})
    actions = []
    for run_at, value in zip((s[0] for s in steps), values, strict=True):
        action = ScheduledAction(experiment=experiment, action=Action.SET_TRAFFIC, value=value, run_at=run_at,
                                 created_by=user, phase=experiment.current_phase)
        action.full_clean()
        actions.append(action)
    return ScheduledAction.objects.bulk_create(actions)


def _who(action: ScheduledAction) -> str:
    return action.created_by.get_username() if action.created_by_id else "unknown"


def _skip_reason(action: ScheduledAction, experiment: Experiment) -> str | None:
    """Why this step no longer makes sense (None: go ahead)."""
    status = experiment.status
    if action.action == Action.SET_TRAFFIC:
        if action.phase is not None and action.phase != experiment.current_phase:
            return (f"the plan changed: phase {experiment.current_phase} began after this step was "
                    f"scheduled in phase {action.phase}")
        if status == Experiment.Status.PAUSED:
            return "the experiment is paused"
        if status not in (Experiment.Status.DRAFT, Experiment.Status.RUNNING):
            return f"the experiment is {status}"
        if action.value < experiment.traffic_allocation:
            return (f"traffic would shrink from {experiment.traffic_allocation}% to {action.value}% "
                    "(the plan changed)")
        if action.value == experiment.traffic_allocation:
            return f"traffic is already {action.value}%"
    elif action.action == Action.RESUME and status != Experiment.Status.PAUSED:
        return f"the experiment is {status}, not paused"
    return None


def execute(action: ScheduledAction) -> None:
    """Apply one action (the caller holds its row lock); sets its status and reason."""
    experiment = Experiment.objects.get(pk=action.experiment_id)
    who = _who(action)
    reason = _skip_reason(action, experiment)
    if reason:
        action.status, action.reason = Status.SKIPPED, reason
        logger.info("scheduled %s of %s skipped: %s", action.action, experiment.key, reason)
        return
    label = f"{action.value}%" if action.action == Action.SET_TRAFFIC else ""
    actor = f"automation: {action.action} {label}".rstrip() + f" scheduled by {who}"
    try:
        with transaction.atomic():  # a refused change leaves nothing behind
            if action.action == Action.SET_TRAFFIC:
                services.update_experiment(experiment, {"traffic_allocation": action.value}, actor=actor)
            elif action.action == Action.START:
                services.start_experiment(experiment, actor=actor)
            elif action.action == Action.PAUSE:
                services.pause_experiment(experiment, actor=actor)
            elif action.action == Action.RESUME:
                services.resume_experiment(experiment, actor=actor)
            elif action.action == Action.COMPLETE:
                services.complete_experiment(experiment, actor=actor)
    except ValidationError as exc:
        messages = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
        action.status = Status.SKIPPED
        action.reason = "; ".join(f"{k}: {' '.join(v)}" if k else " ".join(v) for k, v in messages.items())
        logger.info("scheduled %s of %s skipped: %s", action.action, experiment.key, action.reason)
        return
    action.status, action.reason = Status.DONE, f"done ({actor})"


def run_due(now: datetime | None = None, limit: int = 100) -> int:
    """Run every pending action whose time has come, one row lock each; returns how many ran."""
    now = now or timezone.now()
    count = 0
    for _ in range(limit):
        with transaction.atomic():
            action = (ScheduledAction.objects.select_for_update(skip_locked=True)
                      .filter(status=Status.PENDING, run_at__lte=now).order_by("run_at", "id").first())
            if action is None:
                break
            try:
                execute(action)
            except Exception as exc:  # unexpected: record it, never retry this step blindly
                logger.exception("scheduled action %s failed", action.pk)
                action.status, action.reason = Status.FAILED, f"{type(exc).__name__}: {exc}"
            action.executed_at = timezone.now()
            action.save(update_fields=["status", "reason", "executed_at"])
            count += 1
    return count
