"""``manage.py clickhouse_init``: create the ClickHouse event and exposure tables (idempotent)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from analysis import clickhouse


class Command(BaseCommand):
    help = ("Create the ClickHouse tables the reports read (ReplacingMergeTree, monthly partitions) "
            "on CLICKHOUSE_URL. --print only prints the DDL.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--print", action="store_true", dest="print_only", help="print the DDL, run nothing")

    def handle(self, *args, print_only: bool = False, **options) -> None:
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
