"""Create the demo login, the demo definitions and a demo experiment with realistic data.

A new user should see a real report at once: about 20,000 simulated units over two weeks (half of
the planned 40,000, so the report is an early look, not a Ship: see docs/statistics.md), a true
uplift on the primary metric, an unchanged guardrail, pre-period activity CUPED can use, a daily
history of snapshots and the current report. Idempotent: each step runs only if its result is
missing, so re-running changes nothing.
"""
from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from analysis.reports import backfill_daily, compute_report
from assignment.models import Exposure
from experiments.demo import ensure_demo_definitions

from .simulate import simulate

DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"
DEMO_DATA = {
    "units": 20_000,
    "days": 14,
    "lift": 0.15,  # +15 % purchases: a real winner at this size
    "baseline": 0.10,
    "guardrail_rate": 0.01,
    "guardrail_lift": 0.0,  # refunds unchanged (its 25 % margin is judged at the planned size)
    "secondary_rate": 0.2,
    "seed": 20240601,
}


class Command(BaseCommand):
    help = ("Create the demo login (demo / demo-password), a demo experiment and simulated data "
            "with its report. Idempotent.")

    def add_arguments(self, parser):
        parser.add_argument("--units", type=int, default=DEMO_DATA["units"])
        parser.add_argument("--days", type=int, default=DEMO_DATA["days"])
        parser.add_argument("--no-data", action="store_true", help="Only the login and the definitions.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        if not User.objects.filter(username=DEMO_USER).exists():
            User.objects.create_superuser(DEMO_USER, "demo@example.invalid", DEMO_PASSWORD)
            self.stdout.write(f"Created the demo login {DEMO_USER} / {DEMO_PASSWORD}.")
        experiment, created = ensure_demo_definitions()
        self.stdout.write(f"Demo experiment '{experiment.key}' is {experiment.status}"
                          + (" (new)." if created else " (already there)."))
        if options["no_data"]:
            return
        started = time.monotonic()
        if not Exposure.objects.filter(experiment=experiment).exists():
            params = {**DEMO_DATA, "units": options["units"], "days": options["days"]}
            result = simulate(experiment, progress=not options["no_progress"], **params)
            self.stdout.write(f"Simulated {result.units} users over {params['days']} days "
                              f"({result.events_written} events).")
        else:
            self.stdout.write("Demo data already there.")
        if not experiment.snapshots.exists():
            experiment.refresh_from_db()
            made = backfill_daily(experiment, days=options["days"])
            snapshot = compute_report(experiment)
            headline = (snapshot.payload.get("decision") or {}).get("headline", "")
            self.stdout.write(f"Computed the report ({made} daily snapshots of history): {headline}")
        else:
            self.stdout.write("Demo report already there.")
        self.stdout.write(f"Open /reports/{experiment.key}/ ({time.monotonic() - started:.1f} s).")
