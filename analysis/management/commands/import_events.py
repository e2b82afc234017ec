"""Load historical events from a CSV file, with the API's validation and idempotency.

    python manage.py import_events events.csv [--chunk-size 5000] [--no-progress]

The header names the columns: ``event_id``, ``unit_id``, ``event`` (required), ``value``,
``timestamp`` (required here: history has no "now"), ``properties`` (a JSON object). Empty cells
mean "absent". Rows go through ``analysis.ingestion.ingest_events`` in chunks, so a rerun of the
same file stores nothing twice; at the end a summary counts the rejected rows per reason with
the first few line numbers of each.
"""
from __future__ import annotations

import csv
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from access import jsonsafety
from analysis import ingestion

REQUIRED_COLUMNS = ("event_id", "unit_id", "event")
OPTIONAL_COLUMNS = ("value", "timestamp", "properties")
SHOW_LINES = 5
BAD_JSON = "Must be a JSON object (the cell is not valid JSON)."


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


def _to_event(row: dict[str, str | None]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """A CSV row as the API's event dict, plus errors the CSV form itself causes."""
    errors: dict[str, list[str]] = {}
    item: dict[str, Any] = {name: row.get(name) or None for name in REQUIRED_COLUMNS}
    value = row.get("value")
    if value:
        try:
            item["value"] = float(value)
        except ValueError:
            item["value"] = value  # validation names it: not a number
    timestamp = row.get("timestamp")
    if timestamp:
        item["timestamp"] = timestamp
    else:
        errors["timestamp"] = [ingestion.REQUIRED]
    properties = row.get("properties")
    if properties:
        try:
            # Strict (no NaN literals) and depth-bounded: a hostile cell must not stop the import.
            item["properties"] = jsonsafety.loads(properties)
        except ValueError:
            errors["properties"] = [BAD_JSON]
    return item, errors


class Command(BaseCommand):
    help = "Import events from a CSV file (idempotent on event_id), with a summary of rejections."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="CSV file with a header row.")
        parser.add_argument("--chunk-size", type=int, default=5000, help="Events per bulk write.")
        parser.add_argument("--no-progress", action="store_true", help="Do not show a progress bar.")

    def handle(self, *args, **options) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        chunk_size = options["chunk_size"]
        if not 1 <= chunk_size <= 100_000:
            raise CommandError("--chunk-size must be between 1 and 100000.")

        total = max(_count_lines(path) - 1, 0)
        accepted = duplicates = rejected = 0
        reasons: Counter[str] = Counter()
        lines: dict[str, list[int]] = defaultdict(list)

        def reject(line: int, errors: dict[str, list[str]]) -> None:
            for field, messages in errors.items():
                for message in messages:
                    reason = f"{field}: {message}"
                    reasons[reason] += 1
                    if len(lines[reason]) < SHOW_LINES:
                        lines[reason].append(line)

        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise CommandError(f"The header lacks the column(s): {', '.join(missing)}.")
            ignored = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
            if ignored:
                self.stderr.write(f"Ignoring unknown column(s): {', '.join(ignored)}")
            bar = tqdm(total=total, unit="ev", unit_scale=True, disable=options["no_progress"],
                       file=sys.stderr, desc="import")
            rows = ((reader.line_num, row) for row in reader)
            for chunk in ingestion.chunked(rows, chunk_size):
                items: list[dict[str, Any]] = []
                item_lines: list[int] = []
                for line, row in chunk:
                    if None in row:  # more cells than header columns
                        reject(line, {"row": ["Has more cells than the header has columns."]})
                        rejected += 1
                        continue
                    item, errors = _to_event(row)
                    if errors:
                        reject(line, errors)
                        rejected += 1
                        continue
                    items.append(item)
                    item_lines.append(line)
                result = ingestion.ingest_events(items, now=datetime.now(UTC))
                accepted += result.accepted
                duplicates += result.duplicates
                rejected += len(result.rejected)
                for r in result.rejected:
                    reject(item_lines[r["index"]], r["errors"])
                bar.update(len(chunk))
            bar.close()
        if accepted:
            from analysis.maintenance import refresh_planner_statistics

            refresh_planner_statistics()  # reports right after a big import plan with fresh statistics
        self.stdout.write(
            f"Imported {path.name}: {accepted} accepted, {duplicates} duplicates, {rejected} rejected."
        )
        if reasons:
            self.stdout.write("Rejected rows by reason (first line numbers):")
            for reason, count in reasons.most_common():
                shown = ", ".join(str(n) for n in lines[reason])
                more = ", ..." if count > len(lines[reason]) else ""
                self.stdout.write(f"  {count:>8}  {reason}  (lines {shown}{more})")
