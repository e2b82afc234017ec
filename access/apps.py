from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "API access"

    def ready(self) -> None:
        from . import checks, logging, roles, schema, signals  # noqa: F401

        logging.install()

        from .adminsafety import guard_registered_admins

        guard_registered_admins()  # the admin app (first in INSTALLED_APPS) has registered all
        post_migrate.connect(roles.sync_on_migrate, dispatch_uid="access.roles.sync")
