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
        self._check_event_version(engine)
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

    def _check_event_version(self, engine) -> None:
        """An events table created before the ``ver`` column keeps the *last* copy of an event_id
        and cannot be altered into keeping the first: say how to rebuild it."""
        events, _ = clickhouse.tables()
        rows = engine.execute(engine.dialect, "SELECT name FROM system.columns WHERE database = currentDatabase() "
                              "AND table = %s", [events])
        if rows and "ver" not in {r[0] for r in rows}:
            cols = ", ".join(clickhouse.EVENT_COLUMNS)
            raise CommandError(
                f"The ClickHouse table {events} predates the version column (the first copy of an event_id "
                f"must win). Rebuild it: RENAME TABLE {events} TO {events}_old; run clickhouse_init again; "
                f"INSERT INTO {events} ({cols}) SELECT {cols} FROM {events}_old; DROP TABLE {events}_old.")
