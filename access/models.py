"""API keys with a scope. Keys are stored hashed (djangorestframework-api-key)."""
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class Scope(models.TextChoices):
    CLIENT = "client", "client: assign units and send events"
    ANALYST = "analyst", "analyst: read results (and everything a client can do)"
    ADMIN = "admin", "admin: everything"


#: Each scope includes the ones before it.
SCOPE_RANK = {Scope.CLIENT: 1, Scope.ANALYST: 2, Scope.ADMIN: 3}


class APIKey(AbstractAPIKey):
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.CLIENT)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def has_scope(self, needed: str) -> bool:
        return SCOPE_RANK[self.scope] >= SCOPE_RANK[needed]
