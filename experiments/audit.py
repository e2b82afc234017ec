"""One audit trail per experiment: every change to it and to its children, newest first.

Built from the django-simple-history tables (each definition model has ``HistoricalRecords``):
consecutive records of one row are compared field by field. Entries are plain dicts, shared by
``GET /api/v1/experiments/<key>/history`` and the admin's History page:

    {"at": datetime, "who": "alice" | "api-key:ci" | None, "object_type": "variant", "object": "green",
     "action": "created" | "changed" | "deleted", "reason": "changed by alice in the admin",
     "changes": [{"field": "weight", "old": "50", "new": "60"}]}

Values are display strings; an empty value is ``"none"``, foreign keys show the key they
pointed at (``shipped_variant: none -> green``), never a raw representation.

Approval requests and phases are included. Other apps add entries (phases, ...) with :func:`register_source`: a source is a
function ``experiment -> iterable of entries`` in the shape above.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from .models import (
    ApprovalRequest,
    Experiment,
    ExperimentMetric,
    Layer,
    Metric,
    Override,
    Phase,
    TargetingRule,
    Variant,
)

Entry = dict[str, Any]
Source = Callable[[Experiment], Iterable[Entry]]

NONE = "none"
_SKIP = {"id", "experiment", "history_id", "history_date", "history_change_reason", "history_type",
         "history_user", "created_at"}
_ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}

SOURCES: list[Source] = []


def register_source(source: Source) -> Source:
    """Add a source of entries to every experiment's trail (usable as a decorator)."""
    if source not in SOURCES:
        SOURCES.append(source)
    return source


def show(value: Any) -> str:
    """A value as people read it: 50 (not 50.00), none, compact JSON."""
    if value is None or value == "":
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


class _Names:
    """Keys of the rows foreign keys point at, deleted rows included (looked up in history)."""

    def __init__(self) -> None:
        self.cache: dict[tuple[type, int], str] = {}

    def __call__(self, model: type, pk: int | None, attr: str = "key") -> str:
        if pk is None:
            return NONE
        if (model, pk) not in self.cache:
            row = model.objects.filter(pk=pk).values_list(attr, flat=True).first()
            if row is None and hasattr(model, "history"):
                row = model.history.filter(id=pk).values_list(attr, flat=True).order_by("-history_date").first()
            self.cache[(model, pk)] = str(row) if row is not None else f"#{pk} (removed)"
        return self.cache[(model, pk)]


def _user_model():
    from django.contrib.auth import get_user_model

    return get_user_model()


def _group_model():
    from django.contrib.auth.models import Group

    return Group


def _foreign_keys(names: _Names) -> dict[str, Callable[[Any], str]]:
    return {
        "layer": lambda pk: names(Layer, pk),
        "shipped_variant": lambda pk: names(Variant, pk),
        "owner": lambda pk: names(_user_model(), pk, "username"),
        "requested_by": lambda pk: names(_user_model(), pk, "username"),
        "decided_by": lambda pk: names(_user_model(), pk, "username"),
        "team": lambda pk: names(_group_model(), pk, "name"),
        "metric": lambda pk: names(Metric, pk),
        "variant": lambda pk: names(Variant, pk),
    }


def _fields(historical_model) -> list[tuple[str, str]]:
    """(name, attname) of the tracked fields of a historical model."""
    return [(f.name, f.attname) for f in historical_model._meta.fields if f.name not in _SKIP]


def _diff_records(records, object_type: str, label: Callable[[Any], str], names: _Names) -> list[Entry]:
    """Entries for history records of one model, compared with the previous record of each row."""
    fks = _foreign_keys(names)
    entries: list[Entry] = []
    previous: dict[int, Any] = {}
    fields = None
    for record in records:
        if fields is None:
            fields = _fields(type(record))

        def value(rec, name, attname):
            raw = getattr(rec, attname)
            return fks[name](raw) if name in fks and attname != name else show(raw)  # FKs only

        before = previous.get(record.id)
        changes = []
        for name, attname in fields:
            new = value(record, name, attname)
            old = value(before, name, attname) if before is not None else NONE
            if record.history_type == "-":
                continue
            if old != new or (before is None and new != NONE):
                changes.append({"field": name, "old": old if before is not None else NONE, "new": new})
        previous[record.id] = record
        if record.history_type == "~" and not changes:
            continue  # a save that changed nothing (e.g. the admin re-saving an inline)
        entries.append({
            "at": record.history_date,
            "who": _who(record),
            "object_type": object_type,
            "object": label(record),
            "action": _ACTIONS.get(record.history_type, record.history_type),
            "reason": record.history_change_reason or "",
            "changes": changes,
        })
    return entries


_BY = re.compile(r"\bby (\S+)")


def _who(record) -> str | None:
    """The logged-in user, else the actor the services named in the reason ("started by api-key:ci")."""
    if record.history_user is not None:
        return record.history_user.get_username()
    match = _BY.search(record.history_change_reason or "")
    return match.group(1) if match else None


def _history(model, **filters):
    return model.history.filter(**filters).select_related("history_user").order_by("history_date", "history_id")


def _experiment_entries(experiment: Experiment, names: _Names) -> list[Entry]:
    return _diff_records(_history(Experiment, id=experiment.pk), "experiment", lambda r: r.key, names)


def _children_entries(experiment: Experiment, names: _Names) -> list[Entry]:
    entries = []
    entries += _diff_records(_history(Variant, experiment_id=experiment.pk), "variant", lambda r: r.key, names)
    entries += _diff_records(
        _history(ExperimentMetric, experiment_id=experiment.pk), "metric",
        lambda r: names(Metric, r.metric_id), names,
    )
    entries += _diff_records(
        _history(TargetingRule, experiment_id=experiment.pk), "targeting rule",
        lambda r: f"{r.attribute} {r.operator} {show(r.values)}", names,
    )
    entries += _diff_records(
        _history(ApprovalRequest, experiment_id=experiment.pk), "approval", lambda r: r.action, names,
    )
    # Override history holds unit ids (opaque QA ids); unit erasure deletes these rows.
    entries += _diff_records(_history(Override, experiment_id=experiment.pk), "override", lambda r: r.unit_id, names)
    return entries


def _layer_entries(experiment: Experiment, names: _Names) -> list[Entry]:
    """Changes (holdout, salt, ...) to every layer the experiment has been in: they move its units."""
    layer_ids = set(Experiment.history.filter(id=experiment.pk, layer_id__isnull=False).values_list("layer_id", flat=True))
    entries = []
    for layer_id in layer_ids:
        entries += [
            e for e in _diff_records(_history(Layer, id=layer_id), "layer", lambda r: r.key, names)
            if e["action"] != "created"
        ]
    return entries


def _phase_entries(experiment: Experiment) -> list[Entry]:
    """Each phase's start (with its salt, the re-randomisation choice and the reason) and end."""
    entries: list[Entry] = []
    for phase in Phase.objects.filter(experiment=experiment).order_by("number"):
        label = f"phase {phase.number}"
        entries.append({
            "at": phase.started_at, "who": phase.created_by or None, "object_type": "phase",
            "object": label, "action": "started", "reason": phase.reason or "",
            "changes": [
                {"field": "salt", "old": NONE, "new": show(phase.salt)},
                {"field": "re-randomised", "old": NONE, "new": show(phase.rerandomized)},
            ],
        })
        if phase.ended_at is not None:
            entries.append({
                "at": phase.ended_at, "who": None, "object_type": "phase", "object": label,
                "action": "ended", "reason": "", "changes": [],
            })
    return entries


def experiment_history(experiment: Experiment) -> list[Entry]:
    """The experiment's whole trail, newest first, from every registered source."""
    names = _Names()
    entries = _experiment_entries(experiment, names) + _children_entries(experiment, names)
    entries += _layer_entries(experiment, names)
    entries += _phase_entries(experiment)
    for source in SOURCES:
        entries += list(source(experiment))
    entries.sort(key=lambda e: e["at"], reverse=True)
    return entries
