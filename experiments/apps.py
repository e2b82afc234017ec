from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "experiments"
    verbose_name = "Experiments"

    def ready(self) -> None:
        from . import flag_audit  # noqa: F401  (registers the audience/environment entries of experiment trails)
