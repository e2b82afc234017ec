"""The analysis plan of an experiment, frozen when it starts.

What a report is judged by must be decided before the data comes in: who is targeted, how
units are split, which metrics decide (and with what roles), alpha, the correction, sequential
testing, CUPED, the planned size and duration, and the segments looked at. Once an experiment has
started these are refused by ``experiments.services.update_experiment`` (admin, API, tasks);
the only way to change them is to start a new phase (``experiments.phases.start_new_phase``),
whose analysis then uses only its own exposures and events.

No imports from ``services`` here: ``services`` asks this module which changes are refused.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

#: Scalar fields of the frozen plan (on ``Experiment``).
PLAN_FIELDS = (
    "significance_level", "correction", "sequential_testing", "cuped", "planned_sample_size",
    "planned_duration_days", "segment_attributes",
)
#: Lists of child rows that belong to the plan.
PLAN_LISTS = ("targeting", "variants", "metrics")
#: Everything a new phase may change (and nothing else may change once started).
FROZEN = (*PLAN_LISTS, *PLAN_FIELDS)
LABELS = {
    "significance_level": "significance level (alpha)",
    "correction": "multiple-comparison correction",
    "sequential_testing": "sequential testing setting",
    "cuped": "CUPED setting",
    "planned_sample_size": "planned sample size",
    "planned_duration_days": "planned duration",
    "segment_attributes": "list of segment attributes",
    "targeting": "targeting",
    "variants": "variants and weights",
    "metrics": "metrics and their roles",
}
DEFAULT_SEGMENT_ATTRIBUTES = ["country", "platform", "plan"]


def default_segment_attributes(targeting_attributes: list[str]) -> list[str]:
    """The configured default segments plus the targeting attributes, each once."""
    configured = getattr(settings, "REPORT_SEGMENT_ATTRIBUTES", DEFAULT_SEGMENT_ATTRIBUTES)
    return list(dict.fromkeys(str(n) for n in [*configured, *targeting_attributes] if n))


ATTRIBUTE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
MAX_SEGMENT_ATTRIBUTES = 20


def validate_segment_attributes(value: Any) -> None:
    """A JSON list of at most 20 distinct unit attribute names."""
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        raise ValidationError({"segment_attributes": ['Give a JSON list of attribute names, e.g. ["country", "platform"].']})
    bad = [v for v in value if not ATTRIBUTE_RE.fullmatch(v)]
    if bad:
        raise ValidationError({"segment_attributes": [
            f"Attribute names are 1-64 letters, digits, '_', '.', '-', not starting with a digit; refused: {', '.join(repr(b[:64]) for b in bad[:5])}."
        ]})
    if len(value) > MAX_SEGMENT_ATTRIBUTES or len(set(value)) != len(value):
        raise ValidationError({"segment_attributes": [
            f"At most {MAX_SEGMENT_ATTRIBUTES} segment attributes, each once."
        ]})


def is_frozen(experiment) -> bool:
    """Started experiments (running, paused, completed, archived) keep their plan."""
    return experiment.pk is not None and experiment.started_at is not None


def how_to_change(experiment) -> str:
    return (
        f"To change it, start a new phase: 'Start new phase' on the experiment's admin page, or "
        f"POST /api/v1/experiments/{experiment.key}/phases."
    )


def _weight(value: Any) -> str:
    try:
        return f"{Decimal(str(value)).normalize():f}"
    except Exception:
        return str(value)


def _variants(rows) -> list[dict[str, Any]]:
    return [
        {"key": str(v.get("key")), "weight": _weight(v.get("weight")), "is_control": bool(v.get("is_control")),
         "payload": v.get("payload") or {}}
        for v in rows
    ]


def _metrics(rows) -> list[dict[str, Any]]:
    return [
        {"metric": str(getattr(m.get("metric"), "key", m.get("metric"))), "role": m.get("role", "primary")}
        for m in rows
    ]


def _targeting(rows) -> list[dict[str, Any]]:
    return [
        {"attribute": r.get("attribute"), "operator": r.get("operator"), "values": list(r.get("values") or [])}
        for r in rows
    ]


NORMALISE = {"variants": _variants, "metrics": _metrics, "targeting": _targeting}


def current_lists(experiment) -> dict[str, list[dict[str, Any]]]:
    """The plan's lists as they are now stored, in the same shape as the services take them."""
    return {
        "variants": _variants(
            {"key": v.key, "weight": v.weight, "is_control": v.is_control, "payload": v.payload}
            for v in sorted(experiment.variants.all(), key=lambda v: (v.position, v.pk))
        ),
        "metrics": _metrics(
            {"metric": em.metric.key, "role": em.role}
            for em in sorted(experiment.experiment_metrics.all(), key=lambda e: (e.position, e.pk))
        ),
        "targeting": _targeting(
            {"attribute": r.attribute, "operator": r.operator, "values": r.values}
            for r in sorted(experiment.targeting_rules.all(), key=lambda r: (r.position, r.pk))
        ),
    }


def _scalar(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


def differs(experiment, field: str, value: Any, lists: Mapping[str, Any] | None = None) -> bool:
    """Whether ``value`` would change ``field`` of the plan (a no-op resend is not a change)."""
    if field in PLAN_LISTS:
        lists = lists if lists is not None else current_lists(experiment)
        return NORMALISE[field](value or []) != lists[field]
    current = getattr(experiment, field)
    if field == "significance_level" and current is not None and value is not None:
        try:
            return float(value) != float(current)
        except (TypeError, ValueError):
            return True
    return _scalar(value) != _scalar(current)


def frozen_plan_errors(experiment, changes: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{field: [message]}`` for every change to the frozen plan of a started experiment."""
    if not is_frozen(experiment):
        return {}
    errors: dict[str, list[str]] = {}
    lists = None
    for field in FROZEN:
        if field not in changes:
            continue
        if field in PLAN_LISTS and lists is None:
            lists = current_lists(experiment)
        if differs(experiment, field, changes[field], lists):
            errors[field] = [
                f"The {LABELS[field]} is part of the analysis plan, frozen since the experiment "
                f"started ({experiment.status}). {how_to_change(experiment)}"
            ]
    return errors


def freeze_plan(experiment) -> dict[str, Any]:
    """A JSON copy of the plan as it is now (kept on the phase it governs)."""
    plan: dict[str, Any] = {field: _scalar(getattr(experiment, field)) for field in PLAN_FIELDS}
    plan.update(current_lists(experiment))
    plan["traffic_allocation"] = _weight(experiment.traffic_allocation)
    plan["salt"] = experiment.salt or experiment.key
    return plan
