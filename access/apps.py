from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "API access"

    def ready(self) -> None:
        from . import checks, logging, roles, schema, signals  # noqa: F401

        logging.install()
        post_migrate.connect(roles.sync_on_migrate, dispatch_uid="access.roles.sync")
