"""Invalidate every process's configuration when a definition (experiment, flag, audience,
environment) changes; tell the apps above (``analysis``) when exposures are written."""
from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal

from . import runtime

#: Sent by ``exposures._upsert`` inside the write's transaction, under the shared erasure lock,
#: with ``rows``: the collapsed rows written, ``(experiment_id, variant_id, unit_id, first_ts,
#: attributes, last_ts, phase)`` (times in epoch seconds). A receiver that raises fails the
#: write, so the items stay queued (analysis mirrors exposures to ClickHouse this way: the
#: arrow points from analysis to assignment, never back).
exposures_written = Signal()


def _changed(sender, **kwargs) -> None:
    # Now, so this process (and its open transaction) sees the change at once; and again after
    # the commit, so no other process can rebuild from the not-yet-committed state and keep it.
    runtime.bump_version()
    transaction.on_commit(runtime.bump_version)


def connect() -> None:
    from access.models import Environment
    from experiments.models import (
        Audience,
        Experiment,
        ExperimentAudience,
        ExperimentEnvironment,
        Flag,
        FlagEnvironment,
        FlagRule,
        FlagRuleAudience,
        Layer,
        Override,
        TargetingRule,
        Variant,
    )

    for model in (Layer, Experiment, Variant, TargetingRule, Override, Audience, ExperimentAudience,
                  ExperimentEnvironment, Flag, FlagEnvironment, FlagRule, FlagRuleAudience, Environment):
        for signal in (post_save, post_delete):
            signal.connect(
                _changed, sender=model, weak=False,
                dispatch_uid=f"assignment-config-{signal is post_save}-{model.__name__}",
            )
