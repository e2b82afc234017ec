"""Every write to experiment definitions goes through here: the admin, the API and tasks alike.

Rules that span rows live here, not in models: a violation raises Django's ``ValidationError``
with a dict naming the field, which the admin shows next to the field and the API turns into a
400 JSON body.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from access import jsonsafety

from . import operands
from .models import (
    LAYER_BUCKETS,
    Experiment,
    ExperimentMetric,
    Layer,
    Metric,
    TargetingRule,
    Variant,
)
from .plan import default_segment_attributes, frozen_plan_errors, validate_segment_attributes

Status = Experiment.Status

#: The only moves a status may make: draft -> running <-> paused -> completed -> archived.
TRANSITIONS: dict[str, set[str]] = {
    Status.DRAFT: {Status.RUNNING},
    Status.RUNNING: {Status.PAUSED, Status.COMPLETED},
    Status.PAUSED: {Status.RUNNING, Status.COMPLETED},
    Status.COMPLETED: {Status.ARCHIVED},
    Status.ARCHIVED: set(),
}
#: Experiments that hold a share of their layer.
ACTIVE_STATUSES = (Status.DRAFT, Status.RUNNING, Status.PAUSED)
#: Fields that would silently reassign units if changed after the start.
LOCKED_ONCE_STARTED = ("key", "salt")
LOCKED_WHILE_RUNNING = ("layer", "layer_share")
EXPERIMENT_FIELDS = (
    "key", "name", "hypothesis", "description", "owner", "traffic_allocation", "salt", "layer",
    "layer_share", "significance_level", "correction", "sequential_testing", "cuped",
    "planned_sample_size", "planned_duration_days", "segment_attributes",
)
HUNDRED = Decimal("100")


# --- validation of plain data (shared by serializers, admin formsets and the functions below) ---

def _decimal(value: Any, field: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise ValidationError({field: [f"{value!r} is not a number."]}) from None
    if not number.is_finite():
        raise ValidationError({field: [f"{value!r} is not a finite number."]})
    return number


def _fmt(value: Any) -> str:
    """A percent for messages: 50, 12.5 (not 50.00)."""
    return f"{Decimal(str(value)).normalize():f}"


def _finite_json(value: Any) -> bool:
    """JSON with NaN or Infinity is not JSON: databases refuse it and clients cannot parse it.
    (``access.jsonsafety`` also bounds depth and size, iteratively: any input is safe to check.)"""
    return jsonsafety.problem(value) is None


def validate_variants(variants: Sequence[Mapping[str, Any]]) -> None:
    """At least two variants, exactly one control, unique keys, positive weights summing to 100."""
    errors: list[str] = []
    if len(variants) < 2:
        errors.append("An experiment needs at least two variants (a control and a treatment).")
    keys = [v.get("key") for v in variants]
    duplicates = sorted({k for k in keys if keys.count(k) > 1 and k})
    if duplicates:
        errors.append(f"Variant keys must be unique; repeated: {', '.join(duplicates)}.")
    controls = sum(1 for v in variants if v.get("is_control"))
    if controls != 1:
        errors.append(f"Exactly one variant must be the control (found {controls}).")
    for variant in variants:
        payload = variant.get("payload", {})
        if payload is not None and not isinstance(payload, dict):
            errors.append(f"Variant '{variant.get('key')}': the payload must be a JSON object.")
        elif (problem := jsonsafety.describe(payload)) is not None:
            errors.append(f"Variant '{variant.get('key')}': the payload is not storable JSON: {problem}")
    total = Decimal("0")
    for variant in variants:
        weight = _decimal(variant.get("weight"), "variants")
        if weight <= 0:
            errors.append(f"Variant '{variant.get('key')}' needs a positive weight (got {weight}).")
        total += weight
    if variants and total != HUNDRED:
        errors.append(f"Variant weights must sum to 100 (they sum to {_fmt(total)}).")
    if errors:
        raise ValidationError({"variants": errors})


def validate_metrics(metrics: Sequence[Mapping[str, Any]], *, to_start: bool = False) -> None:
    """No metric twice; at least one primary metric before the experiment may start."""
    errors: list[str] = []
    keys = [getattr(m.get("metric"), "key", m.get("metric")) for m in metrics]
    duplicates = sorted({str(k) for k in keys if keys.count(k) > 1})
    if duplicates:
        errors.append(f"A metric may appear once per experiment; repeated: {', '.join(duplicates)}.")
    roles = {r.value for r in ExperimentMetric.Role}
    for m in metrics:
        if m.get("role") not in roles:
            errors.append(f"Role must be one of {', '.join(sorted(roles))} (got {m.get('role')!r}).")
    for m in metrics:
        margin = m.get("non_inferiority_margin", DEFAULT_NON_INFERIORITY_MARGIN)
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0.0001 <= margin <= 1.0:
            errors.append(f"non_inferiority_margin must be a relative margin from 0.0001 to 1 (got {margin!r}).")
    if to_start and not any(m.get("role") == ExperimentMetric.Role.PRIMARY for m in metrics):
        errors.append("At least one primary metric is needed to start the experiment.")
    if errors:
        raise ValidationError({"metrics": errors})


DEFAULT_NON_INFERIORITY_MARGIN = 0.02


def validate_analysis_plan(experiment: Experiment) -> None:
    """A fixed-horizon test is only valid at a planned end: starting needs a planned sample size
    (or duration), or sequential testing, so the report knows when it may call a result."""
    if experiment.sequential_testing or experiment.planned_sample_size or experiment.planned_duration_days:
        return
    raise ValidationError({"planned_sample_size": [
        "Set a planned sample size (the sample-size calculator gives one) or a planned duration, "
        "or switch on sequential testing, before starting: without a plan no result can be called."
    ]})


_SCALAR = (str, int, float, bool)
_NUMERIC = {"gt", "gte", "lt", "lte"}
_SEMVER = {"semver_eq", "semver_gt", "semver_gte", "semver_lt", "semver_lte"}
_INSTANT = {"before", "after"}
_SINGLE_VALUE = {"equals", "not_equals", "contains", *_NUMERIC, *_SEMVER, *_INSTANT}


def validate_targeting(rules: Sequence[Mapping[str, Any]]) -> None:
    """Targeting rules are structured data: a known operator and a list of scalar values."""
    errors: list[str] = []
    operators = set(TargetingRule.Operator.values)
    for i, rule in enumerate(rules):
        where = f"Rule {i + 1} ({rule.get('attribute') or '?'})"
        op = rule.get("operator")
        values = rule.get("values", [])
        if not rule.get("attribute"):
            errors.append(f"{where}: attribute is required.")
        if op not in operators:
            errors.append(f"{where}: unknown operator {op!r}; use one of {', '.join(sorted(operators))}.")
            continue
        if not isinstance(values, list) or any(not isinstance(v, _SCALAR) for v in values) or not _finite_json(values):
            errors.append(f"{where}: values must be a list of strings, finite numbers or booleans.")
            continue
        if any(isinstance(v, str) and len(v) > 256 for v in values) or len(values) > 1000:
            errors.append(f"{where}: at most 1000 values of at most 256 characters each.")
            continue
        if op in _SINGLE_VALUE and len(values) != 1:
            errors.append(f"{where}: operator '{op}' takes exactly one value (got {len(values)}).")
        elif op in ("in", "not_in") and not values:
            errors.append(f"{where}: operator '{op}' needs at least one value.")
        elif op in ("exists", "not_exists") and values:
            errors.append(f"{where}: operator '{op}' takes no values.")
        if not values or op not in _NUMERIC | _SEMVER | _INSTANT:
            continue
        if op in _NUMERIC and operands.as_number(values[0]) is None:
            errors.append(f"{where}: operator '{op}' compares numbers; give a number (18 or \"18\").")
        elif op in _SEMVER and operands.semver_key(values[0]) is None:
            errors.append(f"{where}: operator '{op}' compares versions; give a semantic version such as "
                          f"1.4.0 or 2.0.0-beta.1 (got {values[0]!r}).")
        elif op in _INSTANT and operands.instant_key(values[0]) is None:
            errors.append(f"{where}: operator '{op}' compares dates; give an ISO 8601 date (2026-03-01) or "
                          f"timestamp with offset (2026-03-01T12:00:00Z) (got {values[0]!r}).")
    if errors:
        raise ValidationError({"targeting": errors})


def validate_layer_share(
    layer: Layer | None, share: Any, *, experiment: Experiment | None = None
) -> None:
    """A layered experiment reserves a share; the layer's holdout plus shares stay within 100 %."""
    if layer is None:
        if share not in (None, ""):
            raise ValidationError({"layer_share": ["Only experiments in a layer have a layer share."]})
        return
    if share in (None, ""):
        raise ValidationError({"layer_share": ["Give the percent of the layer this experiment takes."]})
    share = _decimal(share, "layer_share")
    if not Decimal("0") < share <= HUNDRED:
        raise ValidationError({"layer_share": ["The layer share must be above 0 and at most 100."]})
    others = layer.experiments.filter(status__in=ACTIVE_STATUSES)
    if experiment is not None and experiment.pk:
        others = others.exclude(pk=experiment.pk)
    taken = sum((e.layer_share or Decimal("0") for e in others), Decimal("0"))
    free = HUNDRED - Decimal(str(layer.holdout_percent)) - taken
    if share > free:
        raise ValidationError({"layer_share": [
            f"Layer '{layer.key}' has {_fmt(free)} % free (holdout "
            f"{_fmt(layer.holdout_percent)} %, other experiments {_fmt(taken)} %); "
            f"{_fmt(share)} % asked."
        ]})


def validate_changes(experiment: Experiment, changes: Mapping[str, Any]) -> None:
    """Refuse changes that would silently reassign units of a started experiment."""
    errors: dict[str, list[str]] = {}
    if experiment.started_at is not None:
        for field in LOCKED_ONCE_STARTED:
            if field in changes and changes[field] != getattr(experiment, field):
                errors[field] = [f"The {field} cannot change once the experiment has started."]
    if experiment.is_locked:
        for field in LOCKED_WHILE_RUNNING:
            if field in changes and changes[field] != getattr(experiment, field):
                errors[field] = [f"The {field.replace('_', ' ')} cannot change while the experiment is {experiment.status}."]
        if "traffic_allocation" in changes:
            new = _decimal(changes["traffic_allocation"], "traffic_allocation")
            if new < experiment.traffic_allocation:
                errors["traffic_allocation"] = [
                    f"While {experiment.status}, traffic may only grow (now "
                    f"{_fmt(experiment.traffic_allocation)} %): lowering it would drop enrolled units."
                ]
    if "variants" in changes and experiment.status != Status.DRAFT:
        errors["variants"] = [
            f"Variants, weights and payloads are fixed once an experiment has started (it is "
            f"{experiment.status}): exposures and reports refer to them. To change weights, start a new phase; "
            f"to test other variants, create a new experiment."
        ]
    for field, messages in frozen_plan_errors(experiment, changes).items():  # phases: the frozen plan
        errors.setdefault(field, messages)
    if errors:
        raise ValidationError(errors)


def validate_layer_changes(layer: Layer, changes: Mapping[str, Any]) -> None:
    """A layer with running experiments keeps its salt and holdout, or units would move."""
    if not layer.pk or not layer.experiments.filter(status__in=(Status.RUNNING, Status.PAUSED)).exists():
        if "holdout_percent" in changes and layer.pk:
            taken = sum(
                (e.layer_share or Decimal("0") for e in layer.experiments.filter(status__in=ACTIVE_STATUSES)),
                Decimal("0"),
            )
            if _decimal(changes["holdout_percent"], "holdout_percent") + taken > HUNDRED:
                raise ValidationError({"holdout_percent": [
                    f"The layer's experiments already take {_fmt(taken)} %; the holdout cannot exceed the rest."
                ]})
        return
    errors = {}
    for field in ("salt", "holdout_percent", "key"):
        if field in changes and changes[field] != getattr(layer, field):
            errors[field] = [f"The layer's {field.replace('_', ' ')} cannot change while experiments run in it."]
    if errors:
        raise ValidationError(errors)


# --- writes -----------------------------------------------------------------------------------

def _reason(actor: str | None, text: str) -> str:
    """The history's change reason (simple-history keeps 100 characters)."""
    reason = f"{text} by {actor}" if actor else text
    return reason if len(reason) <= 100 else reason[:99] + "…"


def lock_layer(layer: Layer | int | None) -> Layer | None:
    """Lock a layer row (SELECT ... FOR UPDATE) for the rest of the transaction.

    Every read-then-write of a layer's shares, holdout or bucket ranges takes this lock first
    (after the experiment's own row lock, never before it), so two such writes in one layer are
    serialised on PostgreSQL. SQLite serialises all writers anyway.
    """
    if layer is None:
        return None
    return Layer.objects.select_for_update().get(pk=layer.pk if isinstance(layer, Layer) else layer)


def _same_variants(experiment: Experiment, variants: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a submitted variant list restates the stored one exactly (a no-op edit)."""
    stored = [
        (v.key, v.name, v.weight, v.is_control, v.payload) for v in experiment.variants.order_by("position", "id")
    ]
    try:
        given = [
            (v["key"], v.get("name") or v["key"], _decimal(v["weight"], "variants"), bool(v.get("is_control")),
             v.get("payload") or {})
            for v in variants
        ]
    except (KeyError, ValidationError):
        return False
    return stored == given


def _protected(error: ProtectedError, field: str, what: str) -> ValidationError:
    kinds = sorted({str(obj._meta.verbose_name_plural) for obj in error.protected_objects})
    return ValidationError({field: [f"{what} cannot be removed: {', '.join(kinds)} refer to it."]})


def _replace_children(experiment: Experiment, data: Mapping[str, Any]) -> None:
    """Make the children match the lists given, updating rows in place (ids stay stable).

    Variants are matched by key, metrics by metric, targeting rules by position; only rows no
    longer listed are deleted, and a delete that would take data with it is refused.
    """
    if "variants" in data:
        current = {v.key: v for v in experiment.variants.all()}
        for i, v in enumerate(data["variants"]):
            row = current.pop(v["key"], None) or Variant(experiment=experiment, key=v["key"])
            row.name = v.get("name") or v["key"]
            row.weight = _decimal(v["weight"], "variants")
            row.is_control = bool(v.get("is_control"))
            row.payload = v.get("payload") or {}
            row.position = i
            row.save()
        for row in current.values():
            try:
                with transaction.atomic():
                    row.delete()
            except ProtectedError as e:
                raise _protected(e, "variants", f"Variant '{row.key}'") from None
    if "metrics" in data:
        current_metrics = {em.metric_id: em for em in experiment.experiment_metrics.all()}
        for i, m in enumerate(data["metrics"]):
            metric = m["metric"]
            if not isinstance(metric, Metric):
                metric = Metric.objects.get(key=metric)
            em = current_metrics.pop(metric.pk, None) or ExperimentMetric(experiment=experiment, metric=metric)
            em.role = m.get("role", "primary")
            em.position = i
            em.non_inferiority_margin = m.get("non_inferiority_margin", DEFAULT_NON_INFERIORITY_MARGIN)
            em.save()
        for em in current_metrics.values():
            em.delete()
    if "targeting" in data:
        rules = list(experiment.targeting_rules.all())
        for i, r in enumerate(data["targeting"]):
            rule = rules[i] if i < len(rules) else TargetingRule(experiment=experiment)
            rule.attribute, rule.operator = r["attribute"], r["operator"]
            rule.values, rule.position = list(r.get("values") or []), i
            rule.save()
        for rule in rules[len(data["targeting"]):]:
            rule.delete()


def _save_unique(obj: Any, field: str = "key") -> None:
    """Save a row whose key is unique; a concurrent write of the same key is a 400 naming it.

    ``full_clean`` catches the key taken before; the unique index catches the race (the loser of
    two concurrent inserts waits for the winner's commit, then gets the unique violation).
    """
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:
        model = type(obj)
        if model.objects.filter(**{field: getattr(obj, field)}).exclude(pk=obj.pk).exists():
            raise ValidationError({field: [
                f"{model._meta.verbose_name.capitalize()} with this {field} already exists."
            ]}) from None
        raise


def _full_clean(experiment: Experiment) -> None:
    experiment.full_clean(exclude=["owner", "shipped_variant"], validate_unique=True)


@transaction.atomic
def create_experiment(data: Mapping[str, Any], *, actor: str | None = None) -> Experiment:
    """Create an experiment with its variants, metrics and targeting in one go."""
    validate_variants(data.get("variants", []))
    validate_metrics(data.get("metrics", []))
    validate_targeting(data.get("targeting", []))
    layer = lock_layer(data.get("layer"))  # the shares read below stay true until commit
    validate_layer_share(layer, data.get("layer_share"))
    validate_segment_attributes(data.get("segment_attributes") or [])
    experiment = Experiment(**{f: data[f] for f in EXPERIMENT_FIELDS if f in data})
    _full_clean(experiment)
    experiment._change_reason = _reason(actor, "created")
    _save_unique(experiment)
    _replace_children(experiment, data)
    return experiment


@transaction.atomic
def update_experiment(experiment: Experiment, data: Mapping[str, Any], *, actor: str | None = None) -> Experiment:
    """Partial update; lists given (variants, metrics, targeting) replace the current ones."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status == Status.ARCHIVED:
        raise ValidationError({"status": ["Archived experiments are read-only."]})
    changes = {f: data[f] for f in (*EXPERIMENT_FIELDS, "variants", "metrics", "targeting") if f in data}
    if "variants" in data and (experiment.status == Status.DRAFT or _same_variants(experiment, data["variants"])):
        changes.pop("variants")  # drafts are editable; restating the same variants is a no-op
    validate_changes(experiment, changes)
    if "variants" in data and "variants" not in changes and experiment.status != Status.DRAFT:
        data = {k: v for k, v in data.items() if k != "variants"}
    if "segment_attributes" in data:
        validate_segment_attributes(data["segment_attributes"])
    if "variants" in data:
        validate_variants(data["variants"])
    if "metrics" in data:
        validate_metrics(data["metrics"], to_start=experiment.status != Status.DRAFT)
    if "targeting" in data:
        validate_targeting(data["targeting"])
    layer = data.get("layer", experiment.layer)
    share = data.get("layer_share", experiment.layer_share)
    if "layer" in data or "layer_share" in data:
        # Lock order: the experiment row (above), then the layer row. Both the old and the new layer.
        locked = {i: lock_layer(i) for i in sorted({i for i in (experiment.layer_id, getattr(layer, "pk", None)) if i})}
        layer = locked.get(getattr(layer, "pk", None))  # re-read under the lock: the holdout may have moved
        validate_layer_share(layer, share, experiment=experiment)
    for field in EXPERIMENT_FIELDS:
        if field in data:
            setattr(experiment, field, data[field])
    _full_clean(experiment)
    experiment._change_reason = _reason(actor, "changed")
    _save_unique(experiment)  # a draft's key may change
    if experiment.started_at is not None:  # phases: plan lists got here unchanged; keep their rows
        data = {k: v for k, v in data.items() if k not in ("variants", "metrics", "targeting")}
    _replace_children(experiment, data)
    return experiment


def _check_transition(experiment: Experiment, target: str) -> None:
    if target not in TRANSITIONS[experiment.status]:
        allowed = ", ".join(sorted(TRANSITIONS[experiment.status])) or "nothing"
        raise ValidationError({"status": [
            f"A {experiment.status} experiment cannot become {target}; it can become: {allowed}."
        ]})


def _allocate_layer_range(experiment: Experiment) -> tuple[int, int]:
    """First fit of the experiment's share among the ranges its layer's live experiments hold.

    The caller holds the layer's row lock (``lock_layer``); the other experiments' rows are not
    locked (locking them here could deadlock with their own start, which holds their row first).
    """
    layer = experiment.layer
    size = int((Decimal(str(experiment.layer_share)) * LAYER_BUCKETS / HUNDRED).to_integral_value())
    holdout_end = int((Decimal(str(layer.holdout_percent)) * LAYER_BUCKETS / HUNDRED).to_integral_value())
    taken = sorted(
        (e.layer_bucket_start, e.layer_bucket_end)
        for e in layer.experiments.filter(
            status__in=(Status.RUNNING, Status.PAUSED), layer_bucket_start__isnull=False
        ).exclude(pk=experiment.pk)
    )
    cursor = holdout_end
    for start, end in taken:
        if start - cursor >= size:
            return cursor, cursor + size
        cursor = max(cursor, end)
    if LAYER_BUCKETS - cursor >= size:
        return cursor, cursor + size
    raise ValidationError({"layer_share": [
        f"Layer '{layer.key}' has no free contiguous range of {_fmt(experiment.layer_share)} %."
    ]})


def _check_approval(action: str, approved: bool) -> None:
    """With REQUIRE_APPROVAL on, only an approved request (``experiments.approvals``) may do this."""
    if not approved and getattr(settings, "REQUIRE_APPROVAL", False):
        raise ValidationError({"status": [
            f"This platform requires a second person's approval to {action} an experiment: "
            "request it (admin button or POST /api/v1/experiments/<key>/approvals)."
        ]})


@transaction.atomic
def start_experiment(experiment: Experiment, *, actor: str | None = None, approved: bool = False) -> Experiment:
    """Draft -> running, after checking that the definition is complete and consistent."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    _check_transition(experiment, Status.RUNNING)
    _check_approval("start", approved)
    validate_analysis_plan(experiment)
    variants = list(experiment.variants.values("key", "weight", "is_control"))
    validate_variants(variants)
    validate_metrics(
        [{"metric": em.metric.key, "role": em.role} for em in experiment.experiment_metrics.select_related("metric")],
        to_start=True,
    )
    validate_targeting(list(experiment.targeting_rules.values("attribute", "operator", "values")))
    if experiment.layer_id:
        # The layer row lock serialises every allocation in this layer: without it two concurrent
        # starts each see the other's range as free and take the same buckets.
        experiment.layer = lock_layer(experiment.layer_id)
        validate_layer_share(experiment.layer, experiment.layer_share, experiment=experiment)
        experiment.layer_bucket_start, experiment.layer_bucket_end = _allocate_layer_range(experiment)
    if not experiment.segment_attributes:  # the segments looked at are part of the frozen plan
        experiment.segment_attributes = default_segment_attributes(
            list(experiment.targeting_rules.values_list("attribute", flat=True))
        )
    experiment.status = Status.RUNNING
    experiment.started_at = timezone.now()
    experiment._change_reason = _reason(actor, "started")
    experiment.save()
    from .phases import begin_first_phase  # phases builds on this module

    begin_first_phase(experiment, actor=actor)
    return experiment


@transaction.atomic
def pause_experiment(experiment: Experiment, *, actor: str | None = None) -> Experiment:
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    _check_transition(experiment, Status.PAUSED)
    experiment.status = Status.PAUSED
    experiment.paused_at = timezone.now()
    experiment._change_reason = _reason(actor, "paused")
    experiment.save()
    return experiment


@transaction.atomic
def resume_experiment(experiment: Experiment, *, actor: str | None = None) -> Experiment:
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status != Status.PAUSED:
        raise ValidationError({"status": [f"Only a paused experiment can resume; this one is {experiment.status}."]})
    experiment.status = Status.RUNNING
    experiment.paused_at = None
    experiment._change_reason = _reason(actor, "resumed")
    experiment.save()
    return experiment


@transaction.atomic
def complete_experiment(
    experiment: Experiment, *, shipped_variant: str | None = None, actor: str | None = None,
    approved: bool = False,
) -> Experiment:
    """Stop enrolling; optionally ship a variant so every unit now gets its payload."""
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    _check_transition(experiment, Status.COMPLETED)
    _check_approval("complete", approved)
    if shipped_variant:
        variant = experiment.variants.filter(key=shipped_variant).first()
        if variant is None:
            raise ValidationError({"shipped_variant": [f"No variant '{shipped_variant}' in this experiment."]})
        experiment.shipped_variant = variant
    experiment.status = Status.COMPLETED
    experiment.ended_at = timezone.now()
    experiment.layer_bucket_start = experiment.layer_bucket_end = None  # frees the layer range
    experiment.phases.filter(ended_at__isnull=True).update(ended_at=experiment.ended_at)  # phases
    experiment._change_reason = _reason(actor, "completed" + (f", shipping {shipped_variant}" if shipped_variant else ""))
    experiment.save()
    return experiment


@transaction.atomic
def archive_experiment(experiment: Experiment, *, actor: str | None = None) -> Experiment:
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    _check_transition(experiment, Status.ARCHIVED)
    experiment.status = Status.ARCHIVED
    experiment.archived_at = timezone.now()
    experiment._change_reason = _reason(actor, "archived")
    experiment.save()
    return experiment


#: What each action does to the status.
ACTION_TARGETS = {
    "start": Status.RUNNING, "pause": Status.PAUSED, "resume": Status.RUNNING,
    "complete": Status.COMPLETED, "archive": Status.ARCHIVED,
}


def allowed_actions(experiment: Experiment) -> list[str]:
    """The actions offered for an experiment's current status (``resume`` only from paused)."""
    actions = []
    for action, target in ACTION_TARGETS.items():
        if target not in TRANSITIONS[experiment.status]:
            continue
        if action == "start" and experiment.status != Status.DRAFT:
            continue
        if action == "resume" and experiment.status != Status.PAUSED:
            continue
        actions.append(action)
    return actions


TRANSITION_FUNCTIONS = {
    "start": start_experiment,
    "pause": pause_experiment,
    "resume": resume_experiment,
    "complete": complete_experiment,
    "archive": archive_experiment,
}


@transaction.atomic
def save_layer(layer: Layer, data: Mapping[str, Any], *, actor: str | None = None) -> Layer:
    """Create or change a layer; the holdout check reads the shares under the layer's row lock."""
    created = not layer.pk
    if not created:
        lock_layer(layer.pk)
    validate_layer_changes(layer, data)
    for field, value in data.items():
        setattr(layer, field, value)
    layer.full_clean()
    layer._change_reason = _reason(actor, "created" if created else "changed")
    if created:
        _save_unique(layer)
    else:
        layer.save()
    return layer


@transaction.atomic
def save_metric(metric: Metric, data: Mapping[str, Any], *, actor: str | None = None) -> Metric:
    for field, value in data.items():
        setattr(metric, field, value)
    validate_metric(metric)
    metric.full_clean()
    metric._change_reason = _reason(actor, "changed" if metric.pk else "created")
    if metric.pk:
        metric.save()
    else:
        _save_unique(metric)
    return metric


def validate_metric(metric: Metric) -> None:
    """Ratio metrics need a denominator; other kinds must not have one. Quantile metrics need a
    quantile level strictly between 0 and 1 (and no cap: winsorizing does not move a quantile
    below the cap); other kinds must not have one."""
    if metric.kind == Metric.Kind.RATIO and not metric.denominator_event:
        raise ValidationError({"denominator_event": ["Ratio metrics need a denominator event."]})
    if metric.kind != Metric.Kind.RATIO and metric.denominator_event:
        raise ValidationError({"denominator_event": ["Only ratio metrics have a denominator event."]})
    q = getattr(metric, "quantile", None)
    if metric.kind == Metric.Kind.QUANTILE:
        if q is None:
            raise ValidationError({"quantile": ["Quantile metrics need a quantile, e.g. 0.9 for p90."]})
        try:
            q = Decimal(str(q))
        except (InvalidOperation, ValueError):
            raise ValidationError({"quantile": ["The quantile must be a number, e.g. 0.9."]}) from None
        if not q.is_finite() or not Decimal("0") < q < Decimal("1"):
            raise ValidationError({"quantile": ["The quantile must be strictly between 0 and 1, e.g. 0.9."]})
        if metric.cap is not None:
            raise ValidationError({"cap": ["Quantile metrics take no cap (a quantile is robust to outliers)."]})
    elif q is not None:
        raise ValidationError({"quantile": ["Only quantile metrics have a quantile."]})


def keys_in_use(keys: Iterable[str]) -> set[str]:
    return set(Experiment.objects.filter(key__in=list(keys)).values_list("key", flat=True))
