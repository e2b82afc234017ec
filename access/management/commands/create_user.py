"""``manage.py create_user NAME --role pm|analyst|viewer``: scripted setup of a person with a role."""
from __future__ import annotations

import getpass
import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from access.roles import ROLE_NAMES, VIEWER, sync_roles

PASSWORD_ENV = "CREATE_USER_PASSWORD"


class Command(BaseCommand):
    help = (
        "Create a user (or update an existing one) with one role: pm, analyst or viewer. The password "
        f"comes from --password, else ${PASSWORD_ENV}, else a prompt. PMs and analysts get admin access "
        "(staff); viewers read reports only."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--role", choices=sorted(ROLE_NAMES), required=True)
        parser.add_argument("--password", help=f"Default: ${PASSWORD_ENV}, else asked for.")
        parser.add_argument("--email", default="")
        parser.add_argument("--no-input", action="store_false", dest="interactive",
                            help="Never prompt for the password.")
        parser.add_argument("--team", help="Also add the user to this group (created if missing), e.g. for EXPERIMENT_EDIT_SCOPE=team.")

    def _password(self, given: str | None, interactive: bool) -> str | None:
        if given:
            return given
        if os.environ.get(PASSWORD_ENV):
            return os.environ[PASSWORD_ENV]
        if interactive:
            first = getpass.getpass("Password: ")
            if first != getpass.getpass("Password (again): "):
                raise CommandError("The passwords differ.")
            return first
        return None

    def handle(self, *args, name: str, role: str, password: str | None, email: str, team: str | None, **options) -> None:
        name = name.strip()
        if not name or len(name) > 150:
            raise CommandError("name must be 1 to 150 characters")
        User = get_user_model()
        existing = User.objects.filter(username=name).first()
        password = self._password(password, interactive=options.get("interactive", True) and existing is None
                                  and os.isatty(0))
        if existing is None and not password:
            raise CommandError(f"Give a password: --password, ${PASSWORD_ENV}, or run in a terminal.")
        if password:
            try:
                validate_password(password, existing)
            except ValidationError as e:
                raise CommandError(" ".join(e.messages)) from None
        sync_roles()  # groups hold their permissions even before the next migrate
        group = Group.objects.get(name=ROLE_NAMES[role])
        with transaction.atomic():
            user = existing or User(username=name, email=email)
            if password:
                user.set_password(password)
            if email:
                user.email = email
            user.is_staff = group.name != VIEWER or user.is_superuser
            user.save()
            user.groups.remove(*Group.objects.filter(name__in=ROLE_NAMES.values()).exclude(pk=group.pk))
            user.groups.add(group)
            if team:
                user.groups.add(Group.objects.get_or_create(name=team)[0])
        verb = "Updated" if existing else "Created"
        access = "admin and reports" if user.is_staff else "reports only"
        self.stdout.write(
            f"{verb} user '{name}' with role {group.name} ({access})"
            + (f", team '{team}'" if team else "") + ("; password set." if password else "; password unchanged.")
        )
