"""The three role groups, kept in sync with the code, and ``manage.py create_user``."""
from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from django.db.models.signals import post_migrate

from access.roles import ANALYST, PM, ROLE_PERMISSIONS, VIEWER, sync_roles

pytestmark = pytest.mark.django_db


def perms_of(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_migrate_created_the_three_groups_with_exactly_their_permissions():
    for name in (PM, ANALYST, VIEWER):
        assert perms_of(name) == ROLE_PERMISSIONS[name], name


def test_every_permission_a_role_names_exists():
    """A typo in access/roles.py would silently grant nothing."""
    existing = {f"{a}.{c}" for a, c in Permission.objects.values_list("content_type__app_label", "codename")}
    assert set().union(*ROLE_PERMISSIONS.values()) - existing == set()


def test_post_migrate_reapplies_the_sets():
    group = Group.objects.get(name=PM)
    group.permissions.clear()
    group.permissions.add(Permission.objects.get(codename="delete_metric"))  # not a PM permission
    from django.apps import apps

    post_migrate.send(sender=apps.get_app_config("analysis"), app_config=apps.get_app_config("analysis"),
                      verbosity=0, interactive=False, using="default", apps=apps, plan=[])
    assert perms_of(PM) == ROLE_PERMISSIONS[PM]


def test_a_deleted_group_is_recreated():
    Group.objects.filter(name=VIEWER).delete()
    assert sync_roles()[VIEWER] == 1
    assert perms_of(VIEWER) == {"experiments.view_report"}


def test_role_permissions_hold_for_a_member():
    user = User.objects.create(username="v")
    user.groups.add(Group.objects.get(name=VIEWER))
    user = User.objects.get(pk=user.pk)
    assert user.has_perm("experiments.view_report")
    assert not user.has_perm("experiments.export_report") and not user.has_perm("experiments.view_experiment")


@pytest.mark.parametrize("role, group, staff", [("pm", PM, True), ("analyst", ANALYST, True), ("viewer", VIEWER, False)])
def test_create_user(role, group, staff):
    out = io.StringIO()
    call_command("create_user", "alex", "--role", role, "--password", "a-long-pass-phrase-9", stdout=out)
    user = User.objects.get(username="alex")
    assert list(user.groups.values_list("name", flat=True)) == [group]
    assert user.is_staff is staff and user.check_password("a-long-pass-phrase-9")
    assert f"Created user 'alex' with role {group}" in out.getvalue()


def test_create_user_changes_the_role_of_an_existing_user(monkeypatch):
    monkeypatch.setenv("CREATE_USER_PASSWORD", "another-long-pass-7")
    call_command("create_user", "alex", "--role", "pm", stdout=io.StringIO())
    out = io.StringIO()
    call_command("create_user", "alex", "--role", "viewer", "--team", "checkout", stdout=out)
    user = User.objects.get(username="alex")
    assert set(user.groups.values_list("name", flat=True)) == {VIEWER, "checkout"}
    assert not user.is_staff and user.check_password("another-long-pass-7")
    assert "Updated user 'alex' with role Viewer (reports only), team 'checkout'" in out.getvalue()


def test_create_user_refuses_a_weak_or_missing_password(monkeypatch):
    monkeypatch.delenv("CREATE_USER_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="too short|too common"):
        call_command("create_user", "alex", "--role", "pm", "--password", "abc", stdout=io.StringIO())
    with pytest.raises(CommandError, match="Give a password"):
        call_command("create_user", "alex", "--role", "pm", stdout=io.StringIO(), interactive=False)
    assert not User.objects.filter(username="alex").exists()
