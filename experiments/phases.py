"""Phases: the only way to change a started experiment's analysis plan.

Starting an experiment begins phase 1 with a frozen copy of its plan (``experiments.plan``).
``start_new_phase`` ends the current phase and begins the next one with the changes applied,
in one transaction under the experiment's row lock (``SELECT ... FOR UPDATE``), so two people
starting a phase at once cannot both succeed from the same phase: the second waits for the
lock, then finds either a different current phase (``expected_phase``, 409) or nothing left to
change (400). The old phase's exposures and reports are kept; a phase's analysis uses only
the exposures recorded in it (``Exposure.phase``) and the events up to its end.

A targeting or weight change may re-randomise: the experiment gets a new salt
(``<key>.phase<n>``), so each unit is hashed afresh and carry-over from the old phase (units
who saw one variant now seeing another, or learning effects) cannot bias the new one. Without
it, units keep their bucket, and a unit's variant changes only where the weights moved.
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import plan, services
from .models import Experiment, ExperimentMetric, Metric, Phase, TargetingRule, Variant

Status = Experiment.Status


class PhaseConflict(ValidationError):
    """Someone else started a phase since the caller looked (HTTP 409)."""


def begin_first_phase(experiment: Experiment, *, actor: str | None = None) -> Phase:
    """Phase 1, created by ``services.start_experiment`` inside its transaction."""
    phase, _ = Phase.objects.get_or_create(
        experiment=experiment, number=1,
        defaults={
            "started_at": experiment.started_at or timezone.now(),
            "salt": experiment.salt or experiment.key,
            "plan": plan.freeze_plan(experiment),
            "reason": "Experiment started.",
            "created_by": actor or "",
        },
    )
    return phase


def current_phase(experiment: Experiment) -> Phase | None:
    """The phase now running (or the last one of a completed experiment); None for drafts."""
    return experiment.phases.filter(number=experiment.current_phase).first()


def phase_window(experiment: Experiment, number: int) -> Phase | None:
    return experiment.phases.filter(number=number).first()


def _apply_variants(experiment: Experiment, rows: list[Mapping[str, Any]]) -> None:
    """Update variants in place (their ids are what exposures point at); add new ones; delete
    removed ones only when no unit was ever exposed to them."""
    existing = {v.key: v for v in experiment.variants.all()}
    wanted = {str(r["key"]) for r in rows}
    removed = [key for key in existing if key not in wanted]
    exposed = set()
    if removed:
        from django.apps import apps

        Exposure = apps.get_model("assignment", "Exposure")  # assignment sits above experiments
        exposed = set(
            Exposure.objects.filter(experiment=experiment, variant__key__in=removed)
            .values_list("variant__key", flat=True).distinct()
        )
    if exposed:
        raise ValidationError({"variants": [
            f"Variant {', '.join(repr(k) for k in sorted(exposed))} has exposures and cannot be removed "
            f"(its data belongs to earlier phases). Keep it with a small weight, or complete this "
            f"experiment and start a new one."
        ]})
    for key in removed:
        existing[key].delete()
    for i, row in enumerate(rows):
        variant = existing.get(str(row["key"])) or Variant(experiment=experiment, key=str(row["key"]))
        variant.weight = Decimal(str(row["weight"]))
        variant.is_control = bool(row.get("is_control"))
        variant.name = row.get("name") or variant.name or variant.key
        if "payload" in row or variant.pk is None:
            variant.payload = row.get("payload") or {}
        variant.position = i
        variant._change_reason = "new phase"
        variant.save()


def _apply_metrics(experiment: Experiment, rows: list[Mapping[str, Any]]) -> None:
    experiment.experiment_metrics.all().delete()
    for i, row in enumerate(rows):
        metric = row["metric"]
        if not isinstance(metric, Metric):
            metric = Metric.objects.filter(key=metric).first()
            if metric is None:
                raise ValidationError({"metrics": [f"No metric with key {row['metric']!r}."]})
        ExperimentMetric.objects.create(experiment=experiment, metric=metric, role=row.get("role", "primary"), position=i)


def _apply_targeting(experiment: Experiment, rows: list[Mapping[str, Any]]) -> None:
    experiment.targeting_rules.all().delete()
    for i, row in enumerate(rows):
        TargetingRule.objects.create(
            experiment=experiment, attribute=row["attribute"], operator=row["operator"],
            values=list(row.get("values") or []), position=i,
        )


def _validate(experiment: Experiment, changes: Mapping[str, Any]) -> None:
    unknown = sorted(set(changes) - set(plan.FROZEN))
    if unknown:
        raise ValidationError({field: [
            f"'{field}' is not part of the analysis plan; a new phase changes only: {', '.join(plan.FROZEN)}."
        ] for field in unknown})
    if "variants" in changes:
        services.validate_variants(changes["variants"])
        new_control = next((str(v["key"]) for v in changes["variants"] if v.get("is_control")), None)
        old_control = next((v.key for v in experiment.variants.all() if v.is_control), None)
        if old_control and new_control != old_control:
            raise ValidationError({"variants": [
                f"The control stays '{old_control}' across phases (comparisons are made against it)."
            ]})
    if "metrics" in changes:
        services.validate_metrics(changes["metrics"], to_start=True)
    if "targeting" in changes:
        services.validate_targeting(changes["targeting"])
    if "segment_attributes" in changes:
        plan.validate_segment_attributes(changes["segment_attributes"])


def check_request(
    experiment: Experiment, changes: Mapping[str, Any], *, rerandomize: bool, reason: str,
) -> tuple[str, list[str]]:
    """``(reason, changed fields)`` of a valid new-phase request, else ValidationError: run when
    the phase starts and when its approval is requested (so approvers only see valid requests)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the plan changes (kept with the phase and in the history)."]})
    _validate(experiment, changes)
    lists = plan.current_lists(experiment)
    changed = [f for f in plan.FROZEN if f in changes and plan.differs(experiment, f, changes[f], lists)]
    if not changed and not rerandomize:
        raise ValidationError({"changes": [
            f"Nothing in the plan would change; phase {experiment.current_phase} goes on as it is."
        ]})
    return reason, changed


@transaction.atomic
def start_new_phase(
    experiment: Experiment,
    changes: Mapping[str, Any],
    *,
    rerandomize: bool,
    reason: str,
    actor: str | None = None,
    expected_phase: int | None = None,
    approved: bool = False,
) -> Phase:
    """End the current phase and begin the next with ``changes`` applied to the plan.

    With ``REQUIRE_APPROVAL`` on, only an approved ``new_phase`` request runs this
    (``experiments.approvals``): a plan change mid-flight deserves the same four eyes as a start.

    ``changes`` holds any of ``plan.FROZEN`` (lists replace the current ones). Refused for drafts
    and completed experiments, without a reason, when nothing would change, and when
    ``expected_phase`` is given and another phase began meanwhile (``PhaseConflict``).
    """
    if not approved and getattr(settings, "REQUIRE_APPROVAL", False):
        raise ValidationError({"status": [
            "This platform requires a second person's approval to start a new phase: the admin form and "
            "POST /api/v1/experiments/<key>/phases file the request while approvals are required."
        ]})
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status not in (Status.RUNNING, Status.PAUSED):
        raise ValidationError({"status": [
            f"Only a running or paused experiment can start a new phase; this one is {experiment.status}."
            + (" Edit the draft directly." if experiment.status == Status.DRAFT else
               " Create a new experiment to test again.")
        ]})
    if expected_phase is not None and expected_phase != experiment.current_phase:
        raise PhaseConflict({"expected_phase": [
            f"Phase {experiment.current_phase} was started meanwhile (you expected phase "
            f"{expected_phase}); review the current plan and try again."
        ]})
    reason, changed = check_request(experiment, changes, rerandomize=rerandomize, reason=reason)

    now = timezone.now()
    previous = current_phase(experiment) or begin_first_phase(experiment, actor=actor)
    previous.ended_at = now
    previous.save(update_fields=["ended_at"])
    number = previous.number + 1

    if "variants" in changed:
        _apply_variants(experiment, list(changes["variants"]))
    if "metrics" in changed:
        _apply_metrics(experiment, list(changes["metrics"]))
    if "targeting" in changed:
        _apply_targeting(experiment, list(changes["targeting"]))
    for field in plan.PLAN_FIELDS:
        if field in changed:
            setattr(experiment, field, changes[field])
    if rerandomize:
        experiment.salt = f"{experiment.key}.phase{number}"
    experiment.current_phase = number
    services._full_clean(experiment)
    what = ", ".join(changed) or "nothing but the salt"
    experiment._change_reason = services._reason(
        actor, f"phase {number} ({what}{'; re-randomised' if rerandomize else ''})"
    )
    experiment.save()
    experiment = Experiment.objects.prefetch_related("variants", "experiment_metrics__metric", "targeting_rules").get(pk=experiment.pk)
    return Phase.objects.create(
        experiment=experiment, number=number, started_at=now, salt=experiment.salt,
        plan=plan.freeze_plan(experiment), reason=reason, rerandomized=rerandomize,
        created_by=actor or "",
    )
