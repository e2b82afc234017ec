"""Audit trails of flags and audiences, and the experiment trail's audience/environment entries.

Built like ``experiments.audit`` (same entry shape, same field-by-field diff of the
simple-history tables). A flag's trail holds its own changes, its per-environment switches and
rules (with their audiences), and every change to an audience its rules use: an audience edit
changes who gets the flag's values, so it shows where the flag's owner looks.
"""
from __future__ import annotations

from typing import Any

from access.models import Environment

from . import audit
from .audit import Entry, _diff_records, _history, _Names
from .models import Experiment
from .models_flags import (
    Audience,
    ExperimentAudience,
    ExperimentEnvironment,
    Flag,
    FlagEnvironment,
    FlagRule,
    FlagRuleAudience,
)

#: Link columns shown by the entry's label instead (their raw ids mean nothing to a reader).
_HIDDEN = {"flag", "rule", "environment", "audience"}


def _clean(entries: list[Entry]) -> list[Entry]:
    for entry in entries:
        entry["changes"] = [c for c in entry["changes"] if c["field"] not in _HIDDEN]
    return entries


def _env(names: _Names, pk: Any) -> str:
    return names(Environment, pk) if pk is not None else "?"


def _rule_label(names: _Names, record: Any) -> str:
    return f"r{record.id} ({record.kind}) in {_env(names, record.environment_id)}"


def _audience_entries(audience_ids: set[int], names: _Names) -> list[Entry]:
    entries: list[Entry] = []
    for pk in sorted(audience_ids):
        entries += _diff_records(_history(Audience, id=pk), "audience", lambda r: r.key, names)
    return entries


def flag_history(flag: Flag) -> list[Entry]:
    """The flag's whole trail, newest first."""
    names = _Names()
    entries = _diff_records(_history(Flag, id=flag.pk), "flag", lambda r: r.key, names)
    entries += _diff_records(
        _history(FlagEnvironment, flag_id=flag.pk), "environment", lambda r: _env(names, r.environment_id), names,
    )
    entries += _diff_records(_history(FlagRule, flag_id=flag.pk), "rule", lambda r: _rule_label(names, r), names)
    rule_ids = set(FlagRule.history.filter(flag_id=flag.pk).values_list("id", flat=True))
    links = FlagRuleAudience.history.filter(rule_id__in=rule_ids)
    entries += _diff_records(
        _history(FlagRuleAudience, rule_id__in=rule_ids), "rule audience",
        lambda r: f"r{r.rule_id}: {names(Audience, r.audience_id)}", names,
    )
    entries += [e for e in _audience_entries(set(links.values_list("audience_id", flat=True)), names)
                if e["action"] != "created"]
    entries = _clean(entries)
    entries.sort(key=lambda e: e["at"], reverse=True)
    return entries


def audience_history(audience: Audience) -> list[Entry]:
    """The audience's trail and where it was attached or detached, newest first."""
    names = _Names()
    entries = _audience_entries({audience.pk}, names)
    entries += _diff_records(
        _history(ExperimentAudience, audience_id=audience.pk), "experiment audience",
        lambda r: names(Experiment, r.experiment_id), names,
    )
    entries += _diff_records(
        _history(FlagRuleAudience, audience_id=audience.pk), "flag rule audience",
        lambda r: f"r{r.rule_id}", names,
    )
    entries = _clean(entries)
    entries.sort(key=lambda e: e["at"], reverse=True)
    return entries


@audit.register_source
def experiment_flag_entries(experiment: Experiment) -> list[Entry]:
    """Audiences attached to the experiment, its per-environment switches, and changes to those
    audiences (for the experiment's trail in ``experiments.audit``)."""
    names = _Names()
    entries = _diff_records(
        _history(ExperimentAudience, experiment_id=experiment.pk), "audience",
        lambda r: names(Audience, r.audience_id), names,
    )
    entries += _diff_records(
        _history(ExperimentEnvironment, experiment_id=experiment.pk), "environment",
        lambda r: _env(names, r.environment_id), names,
    )
    audience_ids = set(ExperimentAudience.history.filter(experiment_id=experiment.pk).values_list("audience_id", flat=True))
    entries += [e for e in _audience_entries(audience_ids, names) if e["action"] != "created"]
    return _clean(entries)
