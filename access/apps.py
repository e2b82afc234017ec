from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "API access"

    def ready(self) -> None:
        from . import checks, logging, schema, signals  # noqa: F401

        logging.install()
