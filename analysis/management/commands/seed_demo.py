from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from experiments.demo import ensure_demo_definitions

DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"


class Command(BaseCommand):
    help = "Create the demo login (demo / demo-password) and a demo experiment. Idempotent."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        if not User.objects.filter(username=DEMO_USER).exists():
            User.objects.create_superuser(DEMO_USER, "demo@example.invalid", DEMO_PASSWORD)
            self.stdout.write(f"Created the demo login {DEMO_USER} / {DEMO_PASSWORD}.")
        experiment, created = ensure_demo_definitions()
        self.stdout.write(f"Demo experiment '{experiment.key}' is {experiment.status}"
                          + (" (new)." if created else " (already there)."))
