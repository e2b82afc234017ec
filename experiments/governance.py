"""Who may do what to an experiment: role permissions plus the optional team edit scope.

Roles are Django groups (``access.roles``); this module turns their permissions into answers the
admin, the report pages and the approvals module share.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, PermissionDenied

from .models import Experiment

#: The permission each lifecycle action needs (besides the edit scope).
ACTION_PERMISSIONS = {
    "start": "experiments.start_experiment",
    "pause": "experiments.start_experiment",
    "resume": "experiments.start_experiment",
    "complete": "experiments.complete_experiment",
    "archive": "experiments.complete_experiment",
    "new_phase": "experiments.change_experiment",
}
APPROVE_PERMISSION = "experiments.approve_experiment"


def edit_scope() -> str:
    scope = getattr(settings, "EXPERIMENT_EDIT_SCOPE", "all")
    if scope not in ("all", "team"):
        raise ImproperlyConfigured(f"EXPERIMENT_EDIT_SCOPE must be 'all' or 'team', not {scope!r}.")
    return scope


def in_edit_scope(user, experiment: Experiment | None) -> bool:
    """With ``EXPERIMENT_EDIT_SCOPE=team``: the owner, the team's members and superusers only.

    An experiment with neither owner nor team stays open to every editor; one with an owner but
    no team is the owner's alone. New experiments (``None``) are always in scope.
    """
    if experiment is None or edit_scope() == "all" or getattr(user, "is_superuser", False):
        return True
    if experiment.owner_id is None and experiment.team_id is None:
        return True
    if experiment.owner_id is not None and experiment.owner_id == getattr(user, "pk", None):
        return True
    return experiment.team_id is not None and user.groups.filter(pk=experiment.team_id).exists()


def may_act(user, experiment: Experiment, action: str) -> bool:
    """May this person run ``action`` (start, pause, resume, complete, archive) on the experiment?"""
    permission = ACTION_PERMISSIONS.get(action)
    return bool(permission) and user.has_perm(permission) and in_edit_scope(user, experiment)


def check_action(user, experiment: Experiment, action: str) -> None:
    if not may_act(user, experiment, action):
        raise PermissionDenied(f"You may not {action} experiment '{experiment.key}'.")


def requires_approval() -> bool:
    return bool(getattr(settings, "REQUIRE_APPROVAL", False))
