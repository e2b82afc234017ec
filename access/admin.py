from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin

from .adminsafety import SafeAdminMixin
from .models import APIKey


@admin.register(APIKey)
class ScopedAPIKeyAdmin(SafeAdminMixin, APIKeyModelAdmin):
    list_display = [*APIKeyModelAdmin.list_display, "scope"]
    list_filter = [*APIKeyModelAdmin.list_filter, "scope"]


# The library's own (scope-less) key model is not used by this platform.
from rest_framework_api_key.models import APIKey as _UnusedLibraryKey  # noqa: E402

if admin.site.is_registered(_UnusedLibraryKey):
    admin.site.unregister(_UnusedLibraryKey)
