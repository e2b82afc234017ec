"""The three ready-made roles (Django groups) and the permissions each holds.

Permissions are named as ``"app_label.codename"`` strings, so this module imports no app above
``access``. ``sync_roles`` (run by a data migration and after every ``migrate``/``flush`` through
``post_migrate``) makes each group hold exactly its set: a permission added in code reaches the
groups on the next ``migrate``; a permission added to a group by hand is removed then (give people
extra permissions directly or through another group, not through these three).
"""
from __future__ import annotations

from collections.abc import Iterable

PM = "Product manager"
ANALYST = "Analyst"
VIEWER = "Viewer"
#: ``create_user --role`` names.
ROLE_NAMES = {"pm": PM, "analyst": ANALYST, "viewer": VIEWER}

#: Custom permissions on ``experiments.Experiment`` (declared in its Meta).
EXPERIMENT_PERMISSIONS = [
    ("start_experiment", "Can start, pause and resume experiments"),
    ("complete_experiment", "Can complete experiments and ship a variant"),
    ("approve_experiment", "Can approve another person's start or completion"),
    ("view_report", "Can read experiment reports"),
    ("export_report", "Can export report data (CSV, JSON)"),
    ("recompute_report", "Can recompute reports"),
]

_DEFINITION_MODELS = ["experiment", "variant", "experimentmetric", "targetingrule", "override", "metric", "layer"]
_CHILD_MODELS = ["variant", "experimentmetric", "targetingrule", "override"]
#: Feature flags and saved audiences (PMs edit them; analysts read them).
_FLAG_MODELS = ["flag", "flagenvironment", "flagrule", "flagruleaudience", "audience", "experimentaudience",
                "experimentenvironment"]


def _perms(app: str, actions: Iterable[str], models: Iterable[str]) -> set[str]:
    return {f"{app}.{action}_{model}" for action in actions for model in models}


ROLE_PERMISSIONS: dict[str, set[str]] = {
    PM: (
        _perms("experiments", ["add", "change", "view"], _DEFINITION_MODELS)
        | _perms("experiments", ["delete"], [*_CHILD_MODELS, "experiment"])  # drafts only (the admin checks)
        | _perms("experiments", ["view", "add"], ["approvalrequest"])
        | _perms("experiments", ["add", "change", "view", "delete"], _FLAG_MODELS)
        | _perms("access", ["view"], ["environment"])
        | _perms("analysis", ["add", "change", "view"], ["conclusion"])  # learnings of completed experiments
        | {f"experiments.{codename}" for codename in (
            "start_experiment", "complete_experiment", "approve_experiment", "view_report", "export_report")}
        | _perms("automation", ["add", "change", "view", "delete"],
                 ["alertsubscription", "experimentautomation", "scheduledaction"])
        | _perms("automation", ["view"], ["delivery", "alertstate"])
    ),
    ANALYST: (
        _perms("experiments", ["view"], [*_DEFINITION_MODELS, *_FLAG_MODELS, "approvalrequest"])
        | _perms("access", ["view"], ["environment"])
        | _perms("assignment", ["view"], ["exposure"])
        | _perms("analysis", ["view"], ["event", "reportsnapshot"])
        | _perms("analysis", ["add", "change", "view"], ["conclusion"])
        | _perms("automation", ["view"], ["alertsubscription", "delivery", "alertstate", "scheduledaction"])
        | {f"experiments.{codename}" for codename in (
            "approve_experiment", "view_report", "export_report", "recompute_report")}
    ),
    VIEWER: {"experiments.view_report"},
}
#: Roles whose members may be the second pair of eyes on an approval.
APPROVER_ROLES = (PM, ANALYST)


def sync_roles(group_model=None, permission_model=None) -> dict[str, int]:
    """Create the three groups if missing and give each exactly its permissions (those that exist yet).

    Takes the models so the data migration can pass its historical ones. Returns the number of
    permissions each group now holds.
    """
    if group_model is None or permission_model is None:
        from django.contrib.auth.models import Group, Permission

        group_model, permission_model = Group, Permission
    wanted = set().union(*ROLE_PERMISSIONS.values())
    found = {
        f"{app}.{codename}": pk
        for pk, app, codename in permission_model.objects.filter(
            content_type__app_label__in={p.split(".", 1)[0] for p in wanted}
        ).values_list("pk", "content_type__app_label", "codename")
    }
    counts = {}
    for name, perms in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=name)
        ids = [found[p] for p in sorted(perms) if p in found]
        group.permissions.set(ids)
        counts[name] = len(ids)
    return counts


def sync_on_migrate(sender, using="default", **kwargs) -> None:
    """post_migrate: re-apply the sets after the apps whose permissions the roles use."""
    if getattr(sender, "label", None) in ("access", "experiments", "assignment", "analysis", "automation"):
        sync_roles()


def role_of(user) -> str | None:
    """The user's role name (superusers: None; they hold everything anyway)."""
    names = set(user.groups.values_list("name", flat=True)) if user.is_authenticated else set()
    return next((name for name in (PM, ANALYST, VIEWER) if name in names), None)
