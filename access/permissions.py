"""Scope permissions: client < analyst < admin; each scope includes those below it."""
from rest_framework.permissions import BasePermission

from .models import SCOPE_RANK, Scope


class _HasScope(BasePermission):
    scope: str = Scope.ADMIN

    @property
    def message(self) -> str:
        return f"This API key lacks the '{self.scope}' scope."

    def has_permission(self, request, view) -> bool:
        user = request.user
        scope = getattr(user, "scope", None)
        if scope is None:
            return False
        return SCOPE_RANK[scope] >= SCOPE_RANK[self.scope]


class IsClient(_HasScope):
    scope = Scope.CLIENT


class IsAnalyst(_HasScope):
    scope = Scope.ANALYST


class IsAdmin(_HasScope):
    scope = Scope.ADMIN


class ReadAnalystWriteAdmin(BasePermission):
    """Definitions: analysts may read them, only admins may change them."""

    message = "This API key lacks the scope this request needs."

    def has_permission(self, request, view) -> bool:
        needed = IsAnalyst() if request.method in ("GET", "HEAD", "OPTIONS") else IsAdmin()
        self.message = needed.message
        return needed.has_permission(request, view)
