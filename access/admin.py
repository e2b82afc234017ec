from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin

from .adminsafety import SafeAdminMixin
from .models import APIKey, Environment


@admin.register(APIKey)
class ScopedAPIKeyAdmin(SafeAdminMixin, APIKeyModelAdmin):
    list_display = [*APIKeyModelAdmin.list_display, "scope", "environment_shown"]
    list_filter = [*APIKeyModelAdmin.list_filter, "scope", "environment"]
    list_select_related = ["environment"]

    @admin.display(description="environment", ordering="environment__key")
    def environment_shown(self, obj: APIKey) -> str:
        return obj.environment_key


@admin.register(Environment)
class EnvironmentAdmin(SafeAdminMixin, admin.ModelAdmin):
    """Environments: each has its own API keys, flag rules and experiment on/off state."""

    list_display = ["key", "name", "description", "key_count"]
    search_fields = ["key", "name"]

    def get_readonly_fields(self, request, obj=None):
        return ["key", "created_at"] if obj is not None else ["created_at"]

    @admin.display(description="API keys")
    def key_count(self, obj: Environment) -> int:
        return obj.api_keys.count()


# The library's own (scope-less) key model is not used by this platform.
from rest_framework_api_key.models import APIKey as _UnusedLibraryKey  # noqa: E402

if admin.site.is_registered(_UnusedLibraryKey):
    admin.site.unregister(_UnusedLibraryKey)
