"""Celery tasks of the assignment app (the beat schedule lives in config/settings.py)."""
from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="assignment.tasks.flush_exposures", ignore_result=True)
def flush_exposures() -> int:
    """Drain buffered exposures into the database (idempotent, at-least-once)."""
    return services.flush_exposures()
