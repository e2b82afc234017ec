"""Exposures: the first (and last) time a unit was enrolled in an experiment."""
from __future__ import annotations

from django.db import models


class Exposure(models.Model):
    """One row per (experiment, phase, unit). The variant is the one of the *first* exposure.

    Rows are written in bulk by ``assignment.services.flush_exposures``: duplicates collapse
    into the earliest ``first_seen`` (with its variant and attributes) and the latest
    ``last_seen``. Analysis counts a unit in ``variant``.
    """

    experiment = models.ForeignKey(
        "experiments.Experiment", on_delete=models.PROTECT, related_name="exposures"
    )
    variant = models.ForeignKey(
        "experiments.Variant", on_delete=models.PROTECT, related_name="exposures"
    )
    unit_id = models.CharField(max_length=256, db_index=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    attributes = models.JSONField(
        default=dict, blank=True, help_text="The unit's attributes at its first exposure."
    )
    phase = models.PositiveSmallIntegerField(
        default=1, help_text="The experiment's phase at this exposure (one row per unit and phase)."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "phase", "unit_id"], name="unique_exposure_phase_unit"),
        ]
        indexes = [models.Index(fields=["experiment", "first_seen"], name="exposure_exp_first_seen")]
        ordering = ["experiment", "first_seen"]

    def __str__(self) -> str:
        return f"{self.unit_id} in {self.experiment_id}/{self.variant_id}"


class UnitTombstone(models.Model):
    """An erased unit: later writes of its data from before ``erased_at`` are dropped.

    Buffered copies of an exposure (another process's batch, the Redis queue, a processing list
    left by a failed flush) or an event request in flight can reach the database after the
    erasure; the exposure flush and event ingestion check this table in the same transaction as
    their write (see ``assignment.erasure``). Only a keyed hash of the unit id is kept.
    """

    unit_hash = models.CharField(max_length=64, primary_key=True)
    erased_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"unit erased at {self.erased_at:%Y-%m-%d %H:%M:%S}"


class RejectedExposure(models.Model):
    """A buffered exposure the database refused (a poison item), set aside so that it never
    blocks the others; for an operator to inspect (admin: "Rejected exposures")."""

    rejected_at = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.CharField(max_length=500)
    unit_hash = models.CharField(max_length=64, blank=True, db_index=True,
                                 help_text="Keyed hash of the unit id, so that erasure finds the item.")
    item = models.TextField(help_text="The item as ASCII JSON: [experiment, variant, unit, time, attributes, ...].")

    class Meta:
        ordering = ["-rejected_at"]

    def __str__(self) -> str:
        return f"{self.reason} ({self.rejected_at:%Y-%m-%d %H:%M})"

class ExposureCheck(models.Model):
    """SDK exposures the server did not record because its own evaluation disagreed.

    ``POST /api/v1/exposures`` re-evaluates every exposure an SDK reports. One row per
    experiment per request that had disagreements (append-only: no read-modify-write, so
    concurrent requests need no lock); the report sums them into a data-quality warning.
    """

    experiment = models.ForeignKey(
        "experiments.Experiment", on_delete=models.CASCADE, related_name="exposure_checks"
    )
    mismatched = models.PositiveIntegerField(
        default=0,
        help_text="The configuration version the SDK named gives another answer (a broken SDK).",
    )
    stale = models.PositiveIntegerField(
        default=0,
        help_text="Version unknown to the server and the current configuration disagrees.",
    )
    example = models.JSONField(default=dict, blank=True, help_text="One disagreement, for debugging.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["experiment", "created_at"], name="exposurecheck_exp_created")]

    def __str__(self) -> str:
        return f"{self.experiment_id}: {self.mismatched} mismatched, {self.stale} stale"
