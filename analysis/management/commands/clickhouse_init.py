"""``manage.py clickhouse_init``: create the ClickHouse event and exposure tables (idempotent);
``--copy`` also copies the events and exposures already in Django's database (the switch)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from analysis import clickhouse


class Command(BaseCommand):
    help = ("Create the ClickHouse tables the reports read (ReplacingMergeTree, monthly partitions) "
            "on CLICKHOUSE_URL. --print only prints the DDL; --copy copies Django's events and exposures.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--print", action="store_true", dest="print_only", help="print the DDL, run nothing")
        parser.add_argument("--copy", action="store_true",
                            help="copy the events and exposures stored in Django's database (safe to repeat: "
                                 "ClickHouse reads copies of a row once)")

    def handle(self, *args, print_only: bool = False, copy: bool = False, **options) -> None:
        statements = clickhouse.ddl()
        if print_only:
            self.stdout.write(";\n".join(statements) + ";")
            return
        engine = clickhouse.settings_engine()
        if engine is None:
            raise CommandError("ANALYTICS_BACKEND is not 'clickhouse': set it and CLICKHOUSE_URL first")
        for sql in statements:
            engine.execute(engine.dialect, sql, [])
        self.stdout.write(self.style.SUCCESS(f"{len(statements)} ClickHouse tables ready"))
        if copy:
            from analysis import engines
            from analysis.models import Event
            from assignment.models import Exposure

            engines._load_rows(engine, Event.objects.order_by("pk").iterator(chunk_size=10_000),
                               Exposure.objects.order_by("pk").iterator(chunk_size=10_000),
                               event_fields=engines.COPY_EVENT_FIELDS)
            self.stdout.write(self.style.SUCCESS(
                f"copied {Event.objects.count()} events and {Exposure.objects.count()} exposures"))
