"""Exposures: the first (and last) time a unit was enrolled in an experiment."""
from __future__ import annotations

from django.db import models


class Exposure(models.Model):
    """One row per (experiment, unit). The variant is the one of the *first* exposure.

    Rows are written in bulk by ``assignment.services.flush_exposures``: duplicates collapse
    into the earliest ``first_seen`` (with its variant and attributes) and the latest
    ``last_seen``. Analysis counts a unit in ``variant``.
    """

    experiment = models.ForeignKey(
        "experiments.Experiment", on_delete=models.CASCADE, related_name="exposures"
    )
    variant = models.ForeignKey(
        "experiments.Variant", on_delete=models.CASCADE, related_name="exposures"
    )
    unit_id = models.CharField(max_length=256, db_index=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    attributes = models.JSONField(
        default=dict, blank=True, help_text="The unit's attributes at its first exposure."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "unit_id"], name="unique_exposure_unit"),
        ]
        indexes = [models.Index(fields=["experiment", "first_seen"], name="exposure_exp_first_seen")]
        ordering = ["experiment", "first_seen"]

    def __str__(self) -> str:
        return f"{self.unit_id} in {self.experiment_id}/{self.variant_id}"
