"""Signed read-only share links for a report: readable without an account, expiring, revocable.

The URL is ``/share/<signed>/`` where ``signed`` is ``django.core.signing`` of the stored
token and the expiry (salted for this use): tampering or extending the expiry breaks the
signature; revoking the stored token ends the link before its expiry.
"""
from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from django.core import signing
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from experiments.models import Experiment

from .models import ShareLink

SALT = "analysis.share-link"
#: Who may create and revoke links: sharing data outside the platform is an export.
SHARE_PERMISSION = "experiments.export_report"
MAX_DAYS = 90


class LinkInvalid(Exception):
    """The link is unknown, tampered with, expired or revoked (the message says which)."""


def create_link(experiment: Experiment, *, days: int | str = 7, user=None) -> ShareLink:
    """A new link valid for ``days`` (1-90)."""
    try:
        days = int(days)
    except (TypeError, ValueError):
        raise ValidationError({"days": "Enter a whole number of days."}) from None
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError({"days": f"A link lasts 1 to {MAX_DAYS} days."})
    return ShareLink.objects.create(
        token=secrets.token_urlsafe(32), experiment=experiment, expires_at=timezone.now() + timedelta(days=days),
        created_by=user if getattr(user, "pk", None) else None,
    )


def signed_value(link: ShareLink) -> str:
    return signing.dumps({"t": link.token, "e": int(link.expires_at.timestamp())}, salt=SALT, compress=True)


def url_of(link: ShareLink) -> str:
    return reverse("report-shared", args=[signed_value(link)])


def resolve(value: str) -> ShareLink:
    """The live link for a signed value; LinkInvalid otherwise."""
    try:
        data = signing.loads(value, salt=SALT)
    except signing.BadSignature:
        raise LinkInvalid("This link is not valid.") from None
    if not isinstance(data, dict) or not isinstance(data.get("t"), str) or not isinstance(data.get("e"), int):
        raise LinkInvalid("This link is not valid.")
    link = ShareLink.objects.select_related("experiment").filter(token=data["t"]).first()
    if link is None:
        raise LinkInvalid("This link is not valid.")
    now = timezone.now()
    if link.revoked_at is not None:
        raise LinkInvalid("This link was revoked.")
    if now >= min(link.expires_at, datetime.fromtimestamp(data["e"], UTC)):
        raise LinkInvalid("This link has expired.")
    return link


def revoke(link: ShareLink, *, user=None) -> ShareLink:
    """End a link now (idempotent: an already revoked link keeps its first revocation)."""
    ShareLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=user if getattr(user, "pk", None) else None)
    link.refresh_from_db()
    return link


def active_links(experiment: Experiment) -> list[dict]:
    """Unexpired, unrevoked links of an experiment, with their URLs (for the report page)."""
    links = ShareLink.objects.filter(experiment=experiment, revoked_at__isnull=True, expires_at__gt=timezone.now())
    return [{"link": link, "url": url_of(link)} for link in links.select_related("created_by")]
