"""Erasure of everything recorded about one unit (a data subject's right to be forgotten).

Reports are aggregates recomputed from the remaining rows, so the next report no longer counts
an erased unit; past snapshots hold only per-variant sums, never unit-level data.
"""
from __future__ import annotations

from django.db import transaction

from .models import Event


def erase_unit(unit_id: str) -> dict[str, int]:
    """Delete the unit's events, exposures and overrides (with their history); return counts.

    Exposures go through ``assignment.services.erase_unit`` so that exposures still buffered
    (in Redis or in this process) are flushed or discarded first instead of reappearing later.
    Deleting an override through the ORM writes a "deleted" history row and invalidates the
    assignment configuration; the history rows (which hold the unit id) are removed afterwards.
    """
    from assignment import services as assignment_services
    from experiments.models import Override

    erased = assignment_services.erase_unit(unit_id)
    exposures = int(erased.get("exposures_deleted", 0))
    with transaction.atomic():
        events, _ = Event.objects.filter(unit_id=unit_id).delete()
        _, per_model = Override.objects.filter(unit_id=unit_id).delete()
        overrides = per_model.get(Override._meta.label, 0)
        Override.history.filter(unit_id=unit_id).delete()
    return {"events": events, "exposures": exposures, "overrides": overrides}
