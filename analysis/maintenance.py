"""Database housekeeping the analysis relies on."""
from __future__ import annotations

from django.db import connection

from assignment.models import Exposure

from .models import Event


def refresh_planner_statistics() -> None:
    """``ANALYZE`` the event and exposure tables after a bulk load (PostgreSQL only).

    Until autovacuum gets to a freshly loaded table, PostgreSQL plans with whatever statistics
    it last saw - often "empty" - and picks nested loops that turn a 50 ms aggregation into
    minutes. Inside a transaction ANALYZE counts the transaction's own new rows, so it also
    helps a load that is not committed yet.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Event._meta.db_table}, {Exposure._meta.db_table}")
