"""Run the automation beat jobs once (due scheduled actions, overdue check): for embedded mode,
which has no ``celery beat``; call it from cron every minute."""
from django.core.management.base import BaseCommand

from automation.overdue import check_overdue
from automation.schedules import run_due


class Command(BaseCommand):
    help = "Run due scheduled actions and the overdue check once (what celery beat does in production)."

    def handle(self, *args, **options) -> None:
        ran = run_due()
        overdue = check_overdue()
        self.stdout.write(f"{ran} scheduled action(s) run; {len(overdue)} overdue alert(s) fired")
