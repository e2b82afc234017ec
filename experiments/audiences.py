"""Saved audiences: named, reusable targeting conditions referenced by experiments and flags.

An audience's conditions are targeting rules validated exactly like an experiment's (same
operators, same messages), combined with ``all`` or ``any``. An audience used by a started
(running or paused) experiment is part of that experiment's frozen analysis plan: changing its
conditions is refused. Used by flags only, the change is allowed and recorded in the history
with the flags it affects.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from . import services
from .models import Experiment
from .models_flags import Audience, ExperimentAudience, Flag

logger = logging.getLogger(__name__)

MAX_CONDITIONS = 50
MAX_AUDIENCES = 20
ATTRIBUTE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
CONDITION_KEYS = frozenset({"attribute", "operator", "values"})
#: Experiments whose plan is frozen AND whose units are being enrolled now.
STARTED = (Experiment.Status.RUNNING, Experiment.Status.PAUSED)
AUDIENCE_FIELDS = ("key", "name", "description", "match", "conditions")


def normalise_conditions(conditions: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"attribute": c.get("attribute"), "operator": c.get("operator"), "values": list(c.get("values") or [])}
        for c in conditions
    ]


def validate_conditions(conditions: Any) -> list[dict[str, Any]]:
    """The conditions as stored (``[{attribute, operator, values}]``), or a 400 on ``conditions``."""
    if not isinstance(conditions, list) or any(not isinstance(c, dict) for c in conditions):
        raise ValidationError({"conditions": [
            'Give a list of conditions, e.g. [{"attribute": "country", "operator": "in", "values": ["DE"]}].'
        ]})
    if len(conditions) > MAX_CONDITIONS:
        raise ValidationError({"conditions": [f"At most {MAX_CONDITIONS} conditions."]})
    errors = []
    for i, c in enumerate(conditions):
        unknown = sorted(set(c) - CONDITION_KEYS)
        if unknown:
            errors.append(f"Rule {i + 1}: unknown member {unknown[0][:64]!r}; a condition has attribute, operator, values.")
        attribute = c.get("attribute")
        if attribute and (not isinstance(attribute, str) or not ATTRIBUTE.fullmatch(attribute)):
            errors.append(f"Rule {i + 1}: attribute names are 1-64 letters, digits, '_', '.', '-', not starting with a digit.")
    if errors:
        raise ValidationError({"conditions": errors})
    try:
        services.validate_targeting(conditions)  # the same rules as an experiment's targeting
    except ValidationError as e:
        raise ValidationError({"conditions": e.message_dict.get("targeting", e.messages)}) from None
    return normalise_conditions(conditions)


def experiments_using(audience: Audience) -> QuerySet:
    return Experiment.objects.filter(audience_links__audience=audience).distinct().order_by("key")


def flags_using(audience: Audience) -> QuerySet:
    return Flag.objects.filter(rules__audience_links__audience=audience).distinct().order_by("key")


def usage(audience: Audience) -> dict[str, list[dict[str, Any]]]:
    """Where an audience is used: ``{"experiments": [{key, status}], "flags": [{key, environments}]}``."""
    flags: dict[str, set[str]] = {}
    for flag_key, env_key in (
        Flag.objects.filter(rules__audience_links__audience=audience)
        .values_list("key", "rules__environment__key").distinct()
    ):
        flags.setdefault(flag_key, set()).add(env_key)
    return {
        "experiments": [{"key": e.key, "status": e.status} for e in experiments_using(audience)],
        "flags": [{"key": k, "environments": sorted(v)} for k, v in sorted(flags.items())],
    }


def _frozen_by(audience: Audience) -> list[Experiment]:
    """Started experiments using the audience. Every experiment using it is locked (PostgreSQL),
    whatever its status, so none starts between this check and the commit of the change; one
    whose start committed first is read as started."""
    using = Experiment.objects.select_for_update(of=("self",)).filter(audience_links__audience=audience).order_by("pk")
    return sorted((e for e in using if e.status in STARTED), key=lambda e: e.key)


@transaction.atomic
def save_audience(audience: Audience, data: dict[str, Any], *, actor: str | None = None) -> Audience:
    """Create or change an audience. Conditions and match are refused while a running or paused
    experiment uses it; a change affecting flags is allowed and logged (history and log)."""
    created = audience.pk is None
    data = dict(data)
    if "conditions" in data:
        data["conditions"] = validate_conditions(data["conditions"])
    if "match" in data and data["match"] not in Audience.Match.values:
        raise ValidationError({"match": ["Must be all or any."]})
    reason = "created"
    if not created:
        audience = Audience.objects.select_for_update().get(pk=audience.pk)
        if "key" in data and data["key"] != audience.key:
            raise ValidationError({"key": ["An audience's key is fixed once created (documents refer to it)."]})
        changed = [f for f in ("match", "conditions") if f in data and data[f] != getattr(audience, f)]
        if changed:
            frozen = _frozen_by(audience)
            if frozen:
                raise ValidationError({changed[0]: [
                    f"Audience '{audience.key}' is used by started experiment(s) "
                    f"{', '.join(f'{e.key} ({e.status})' for e in frozen[:5])}, whose analysis plan is frozen. "
                    f"Create a new audience for the change (new experiments and flags can use it)."
                ]})
            flags = list(flags_using(audience).values_list("key", flat=True))
            reason = "changed" + (f"; affects flags {', '.join(flags)}" if flags else "")
            if flags:
                logger.info("audience %s changed by %s; affects flags %s", audience.key, actor, ", ".join(flags))
        else:
            reason = "changed"
    for field in AUDIENCE_FIELDS:
        if field in data:
            setattr(audience, field, data[field])
    audience.full_clean(validate_unique=created)
    audience._change_reason = services._reason(actor, reason)
    if created:
        services._save_unique(audience)
    else:
        audience.save()
    return audience


@transaction.atomic
def delete_audience(audience: Audience, *, actor: str | None = None) -> None:
    """Delete an unused audience; one referenced by an experiment or flag is refused."""
    audience = Audience.objects.select_for_update().get(pk=audience.pk)
    used = usage(audience)
    if used["experiments"] or used["flags"]:
        names = [f"experiment {e['key']}" for e in used["experiments"]] + [f"flag {f['key']}" for f in used["flags"]]
        raise ValidationError({"audience": [f"Audience '{audience.key}' is used by {', '.join(names[:10])}."]})
    audience._change_reason = services._reason(actor, "deleted")
    audience.delete()


def resolve_keys(keys: Any, field: str = "audiences") -> list[Audience]:
    """The audiences named (in order, each once), or a 400 naming ``field``."""
    if not isinstance(keys, list) or any(not isinstance(k, str) for k in keys):
        raise ValidationError({field: ['Give a list of audience keys, e.g. ["eu-mobile"].']})
    if len(keys) > MAX_AUDIENCES or len(set(keys)) != len(keys):
        raise ValidationError({field: [f"At most {MAX_AUDIENCES} audiences, each once."]})
    found = {a.key: a for a in Audience.objects.filter(key__in=keys)}
    missing = [k for k in keys if k not in found]
    if missing:
        raise ValidationError({field: [f"No audience {', '.join(repr(k[:64]) for k in missing[:5])}."]})
    return [found[k] for k in keys]


def experiment_audience_keys(experiment: Experiment) -> list[str]:
    return [link.audience.key for link in experiment.audience_links.select_related("audience").order_by("position", "id")]


@transaction.atomic
def set_experiment_audiences(experiment: Experiment, keys: Any, *, actor: str | None = None) -> list[str]:
    """Replace the audiences an experiment's units must belong to. Part of the analysis plan:
    refused once the experiment has started (unless the list is unchanged)."""
    audiences = resolve_keys(keys)
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    current = experiment_audience_keys(experiment)
    wanted = [a.key for a in audiences]
    if current == wanted:
        return current
    if experiment.started_at is not None:
        raise ValidationError({"audiences": [
            f"The audiences are part of the analysis plan, frozen since the experiment started "
            f"({experiment.status}). Create a new experiment to target other audiences."
        ]})
    links = {link.audience_id: link for link in experiment.audience_links.all()}
    for i, audience in enumerate(audiences):
        link = links.pop(audience.pk, None) or ExperimentAudience(experiment=experiment, audience=audience)
        if link.pk is None or link.position != i:
            link.position = i
            link._change_reason = services._reason(actor, "audience set")
            link.save()
    for link in links.values():
        link._change_reason = services._reason(actor, "audience removed")
        link.delete()
    return wanted
