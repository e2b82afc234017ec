"""When a phase ends, compute its final report (so every phase keeps a readable report)."""
from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import Signal

logger = logging.getLogger(__name__)


def _final_report_of_previous_phase(sender, instance, created: bool, **kwargs) -> None:
    if not created or instance.number <= 1:
        return
    experiment_id, number = instance.experiment_id, instance.number - 1

    def enqueue() -> None:
        from experiments.models import Experiment

        from . import tasks

        try:
            tasks.request_refresh(Experiment.objects.get(pk=experiment_id), phase=number)
        except Exception:  # the phase change stands; the report can be recomputed on request
            logger.exception("could not enqueue the final report of phase %d of experiment %d", number, experiment_id)

    transaction.on_commit(enqueue)


def connect() -> None:
    from experiments.models import Phase

    post_save.connect(_final_report_of_previous_phase, sender=Phase, weak=False,
                      dispatch_uid="analysis-final-phase-report")


# --- report pipeline signals --------------------------------------------------------------------
# For apps above analysis (``automation``) to react without analysis importing them. Sent with
# ``send_robust`` by ``analysis.tasks.compute_report``: a receiver's error is logged, never raised.

#: A snapshot was stored: ``experiment``, ``snapshot``, ``phase`` (None: the current phase).
report_computed = Signal()
#: The computation failed (not retried): ``experiment``, ``error``, ``phase``.
report_failed = Signal()
