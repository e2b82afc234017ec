"""Environments as the definitions see them: resolve a key, switch an experiment on or off.

``access.Environment`` holds the rows; an experiment or flag without a state row for an
environment is on there (so a new environment starts with everything on, like production).
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from access.models import DEFAULT_ENVIRONMENT, Environment
from access.services import get_environment

from .models import Experiment
from .models_flags import ExperimentEnvironment
from .services import _reason, _save_unique

__all__ = ["DEFAULT_ENVIRONMENT", "resolve", "save_environment", "experiment_states", "set_experiment_enabled"]


def resolve(key: object, field: str = "environment") -> Environment:
    """The environment named ``key``, or a 400 naming ``field``."""
    if not isinstance(key, str) or not key or len(key) > 32:
        raise ValidationError({field: ["Give an environment key, e.g. production."]})
    environment = get_environment(key)
    if environment is None:
        known = ", ".join(Environment.objects.values_list("key", flat=True)) or "none"
        raise ValidationError({field: [f"No environment {key!r}; known: {known}."]})
    return environment


@transaction.atomic
def save_environment(environment: Environment, data: dict, *, actor: str | None = None) -> Environment:
    """Create an environment or change its name and description (the key is fixed once created)."""
    if environment.pk and "key" in data and data["key"] != environment.key:
        raise ValidationError({"key": ["An environment's key is fixed: API keys and flag rules refer to it."]})
    for field in ("key", "name", "description"):
        if field in data:
            setattr(environment, field, data[field])
    environment.full_clean(validate_unique=False)
    if environment.pk:
        environment.save()
    else:
        _save_unique(environment)
    return environment


def experiment_states(experiment: Experiment) -> dict[str, bool]:
    """``{environment key: on?}`` for every environment (no row: on)."""
    stored = {s.environment.key: s.enabled for s in experiment.environment_states.select_related("environment")}
    return {key: stored.get(key, True) for key in Environment.objects.values_list("key", flat=True)}


@transaction.atomic
def set_experiment_enabled(
    experiment: Experiment, environment: str, enabled: bool, *, actor: str | None = None,
) -> ExperimentEnvironment:
    """Switch an experiment on or off in one environment (off: every unit gets the control there,
    reason ``disabled_in_environment``). Recorded in the experiment's history."""
    if not isinstance(enabled, bool):
        raise ValidationError({"enabled": ["Must be true or false."]})
    env = resolve(environment)
    experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if experiment.status == Experiment.Status.ARCHIVED:
        raise ValidationError({"status": ["Archived experiments are read-only."]})
    state = ExperimentEnvironment.objects.filter(experiment=experiment, environment=env).first()
    if state is None:
        state = ExperimentEnvironment(experiment=experiment, environment=env, enabled=enabled)
    elif state.enabled == enabled:
        return state
    state.enabled = enabled
    state._change_reason = _reason(actor, f"{'on' if enabled else 'off'} in {env.key}")
    try:
        with transaction.atomic():
            state.save()
    except IntegrityError:  # (the experiment's row lock serialises twins; SQLite without it)
        state = ExperimentEnvironment.objects.get(experiment=experiment, environment=env)
        state.enabled = enabled
        state._change_reason = _reason(actor, f"{'on' if enabled else 'off'} in {env.key}")
        state.save()
    return state
