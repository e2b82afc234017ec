"""API keys with a scope and an environment. Keys are stored hashed (djangorestframework-api-key)."""
from django.core.validators import RegexValidator
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class Scope(models.TextChoices):
    CLIENT = "client", "client: assign units and send events"
    ANALYST = "analyst", "analyst: read results (and everything a client can do)"
    ADMIN = "admin", "admin: everything"


#: Each scope includes the ones before it.
SCOPE_RANK = {Scope.CLIENT: 1, Scope.ANALYST: 2, Scope.ADMIN: 3}

#: The environment of keys (and requests) that name none.
DEFAULT_ENVIRONMENT = "production"
#: Created by migration 0003.
DEFAULT_ENVIRONMENTS = (
    ("development", "Development"),
    ("staging", "Staging"),
    ("production", "Production"),
)


class Environment(models.Model):
    """Where an application runs (development, staging, production): each has its own API keys,
    flag rules and experiment on/off state; definitions (flags, metrics, audiences) are shared."""

    key = models.CharField(
        max_length=32, unique=True,
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9_-]{0,31}$",
                                   "Use 1-32 lowercase letters, digits, '-' or '_', starting with a letter or digit.")],
        help_text="Stable identifier; fixed once created (keys, rules and documents refer to it).",
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class APIKey(AbstractAPIKey):
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.CLIENT)
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.PROTECT, related_name="api_keys",
        help_text="The environment whose configuration this key sees (blank: production).",
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def has_scope(self, needed: str) -> bool:
        return SCOPE_RANK[self.scope] >= SCOPE_RANK[needed]

    @property
    def environment_key(self) -> str:
        return self.environment.key if self.environment_id else DEFAULT_ENVIRONMENT
