"""Outcomes (events) and the report snapshots computed from them."""
from __future__ import annotations

from django.db import models
from simple_history.models import HistoricalRecords


class Event(models.Model):
    """Something a unit did (a purchase, a click), sent by a client application.

    ``event_id`` is chosen by the client and unique: a retried batch is stored once.
    """

    event_id = models.CharField(max_length=256, unique=True)
    unit_id = models.CharField(max_length=256)
    event = models.CharField(max_length=128)
    value = models.FloatField(null=True, blank=True)
    timestamp = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # Aggregation joins exposures to a unit's events of one name in a time range.
            models.Index(fields=["unit_id", "event", "timestamp"], name="event_unit_name_time"),
            models.Index(fields=["event", "timestamp"], name="event_name_time"),
        ]

    def __str__(self) -> str:
        return f"{self.event} by {self.unit_id} at {self.timestamp:%Y-%m-%d %H:%M}"


class ReportSnapshot(models.Model):
    """One computed report of an experiment. Kept: the history feeds charts of how results moved.

    Written in a single transaction at the end of a computation, so a half-computed report is
    never visible.
    """

    experiment = models.ForeignKey(
        "experiments.Experiment", on_delete=models.PROTECT, related_name="snapshots"
    )
    computed_at = models.DateTimeField(db_index=True)
    data_from = models.DateTimeField(null=True, blank=True)
    data_to = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    payload = models.JSONField()
    phase = models.PositiveSmallIntegerField(
        default=1, help_text="The experiment phase analysed (its exposures, its plan, its time window)."
    )

    class Meta:
        ordering = ["-computed_at"]
        indexes = [
            models.Index(fields=["experiment", "-computed_at"], name="snapshot_exp_time"),
            models.Index(fields=["experiment", "phase", "-computed_at"], name="snapshot_exp_phase_time"),
        ]
        get_latest_by = "computed_at"

    def __str__(self) -> str:
        return f"{self.experiment_id} @ {self.computed_at:%Y-%m-%d %H:%M}"


class Conclusion(models.Model):
    """What a completed experiment taught: the outcome, a written summary, tags and links.

    One per experiment (the learnings library lists them); written through
    ``analysis.conclusions.save_conclusion``. Its history is kept (who concluded what, when).
    """

    class Outcome(models.TextChoices):
        WON = "won", "Won"
        LOST = "lost", "Lost"
        INCONCLUSIVE = "inconclusive", "Inconclusive"
        INVALID = "invalid", "Invalid"

    experiment = models.OneToOneField(
        "experiments.Experiment", on_delete=models.PROTECT, related_name="conclusion"
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices, db_index=True)
    summary = models.TextField(help_text="What was learnt, in a few sentences.")
    tags = models.CharField(
        max_length=500, blank=True,
        help_text="Stored as ',tag1,tag2,' (lower case) so a tag filter is one portable LIKE on every database.",
    )
    links = models.JSONField(default=list, blank=True, help_text="http(s) URLs: designs, tickets, write-ups.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    history = HistoricalRecords(excluded_fields=["updated_at"])

    def __str__(self) -> str:
        return f"{self.experiment_id}: {self.outcome}"

    @property
    def tag_list(self) -> list[str]:
        return [t for t in self.tags.split(",") if t]


class ShareLink(models.Model):
    """A signed, expiring, revocable read-only link to one experiment's report (no account needed).

    The URL carries ``django.core.signing`` of ``{"t": token, "e": expiry}``: it cannot be forged
    or have its expiry extended; revoking sets ``revoked_at`` and the token stops working.
    """

    token = models.CharField(max_length=43, unique=True, editable=False)
    experiment = models.ForeignKey(
        "experiments.Experiment", on_delete=models.PROTECT, related_name="share_links"
    )
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"share link of {self.experiment_id} until {self.expires_at:%Y-%m-%d %H:%M}"
