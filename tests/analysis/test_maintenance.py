"""Planner statistics after bulk loads (PostgreSQL)."""
from __future__ import annotations

import pytest
from django.db import connection

from analysis.maintenance import refresh_planner_statistics
from analysis.models import Event

from .reporting import make_experiment

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _estimated_rows(table: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
        return float(cursor.fetchone()[0])


def test_analyze_counts_the_rows_of_a_load_not_yet_committed():
    """Without it the planner keeps thinking the table is empty and nests loops over 20k units."""
    from django.core.management import call_command

    make_experiment()
    call_command("simulate", "--experiment", "checkout", "--units", "600", "--days", "3",
                 "--seed", "1", "--no-progress", "--no-report")
    events = Event.objects.count()
    assert events > 0
    refresh_planner_statistics()
    assert _estimated_rows(Event._meta.db_table) == pytest.approx(events, rel=0.05)
