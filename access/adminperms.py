"""One permission check for every admin action and button.

Django admin actions run for anyone who can see the changelist unless they declare
``allowed_permissions``; custom button views check nothing unless they ask. Both go through
:func:`allowed`, which calls the model admin's ``has_<permission>_permission`` method, so a
later rule (roles, approvals, team scope) is added in one place: override that method.
"""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest


def allowed(modeladmin: Any, request: HttpRequest, permission: str, obj: Any = None) -> bool:
    """Whether ``request.user`` may do ``permission`` (change, delete, recompute, ...) on ``obj``."""
    check = getattr(modeladmin, f"has_{permission}_permission", None)
    if check is None:
        return False  # an unknown permission is refused, never granted
    return bool(check(request, obj) if obj is not None else check(request))


def refuse_unless(modeladmin: Any, request: HttpRequest, permission: str, obj: Any = None) -> bool:
    """``allowed``, plus the admin's standard message when not: for button views."""
    if allowed(modeladmin, request, permission, obj):
        return False
    messages.error(request, "That action is not allowed: you lack the permission it needs.")
    return True
