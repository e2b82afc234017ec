from django.apps import AppConfig


class AssignmentConfig(AppConfig):
    name = "assignment"
    verbose_name = "Assignment and exposures"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # experiments/ must not know about us: we listen to its models' signals instead.
        from . import signals

        signals.connect()
        # atexit does not run on SIGTERM: flush the in-process exposure buffer then too.
        from . import exposures

        exposures.install_sigterm_flush()
