from django.apps import AppConfig


class AnalysisConfig(AppConfig):
    name = "analysis"
    verbose_name = "Analysis"

    def ready(self) -> None:
        from . import checks, mirror, signals  # noqa: F401 - checks registers itself

        signals.connect()
        mirror.connect()
