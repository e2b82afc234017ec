"""``manage.py clickhouse_load``: move the event stream into ClickHouse now (what the beat job
``analysis.tasks.load_clickhouse`` does), e.g. to drain it after an outage or in a cron."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from analysis import clickhouse, loader, stream


class Command(BaseCommand):
    help = "Load pending event-stream entries into ClickHouse (insert, then acknowledge)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--seconds", type=float, default=300.0, help="stop after this long (default 300)")
        parser.add_argument("--rows", type=int, default=None, help="rows per INSERT (default CLICKHOUSE_LOAD_ROWS)")

    def handle(self, *args, seconds: float = 300.0, rows: int | None = None, **options) -> None:
        if not clickhouse.enabled():
            raise CommandError("ANALYTICS_BACKEND is not 'clickhouse': nothing to load")
        if rows is not None and rows < 1:
            raise CommandError("--rows must be at least 1")
        result = loader.load(max_seconds=seconds, rows=rows)
        self.stdout.write(self.style.SUCCESS(
            f"loaded {result.events} events and {result.exposures} exposures from {result.entries} entries "
            f"({result.dropped} rows of erased units dropped); {stream.pending()} entries still pending"))
