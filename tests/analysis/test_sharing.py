"""Signed read-only share links: readable without an account, expiring, revocable, unforgeable."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core import signing
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from access.roles import ROLE_NAMES
from analysis import reports, sharing
from analysis.models import ShareLink

from .reporting import make_experiment, populate

pytestmark = pytest.mark.django_db


def _client(name: str, role: str | None) -> tuple[Client, User]:
    user = User.objects.create(username=name, is_staff=role in ("pm", "analyst"))
    if role:
        user.groups.add(Group.objects.get(name=ROLE_NAMES[role]))
    client = Client()
    client.force_login(user)
    return client, user


@pytest.fixture
def report():
    experiment = make_experiment()
    populate(experiment, units=600, lift=0.3, seed=5, days=3)
    return experiment, reports.compute_report(experiment, include_segments=False)


def test_an_anonymous_reader_sees_the_report_read_only(report):
    experiment, snapshot = report
    link = sharing.create_link(experiment, days=7)
    r = Client().get(sharing.url_of(link))
    assert r.status_code == 200
    page = r.content.decode()
    assert 'id="decision"' in page and 'id="shared-banner"' in page
    green = snapshot.payload["metrics"][0]["variants"][1]
    assert f"{green['lift']['relative']:+.1%}" in page
    for action in ("export-csv", "recompute", "create-share", "/api/v1/", "edit-conclusion", "csrfmiddlewaretoken"):
        assert action not in page, action
    assert r["Referrer-Policy"] == "no-referrer" and "noindex" in r["X-Robots-Tag"]
    assert "no-store" in r["Cache-Control"]


def test_expiry_is_enforced_by_the_row_and_by_the_signature(report):
    experiment, _ = report
    link = sharing.create_link(experiment, days=1)
    url = sharing.url_of(link)
    ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = Client().get(url)
    assert r.status_code == 410 and "expired" in r.content.decode()
    # A value signed with an expiry in the past fails even if the row were extended.
    ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() + timedelta(days=30))
    stale = signing.dumps({"t": link.token, "e": int((timezone.now() - timedelta(minutes=1)).timestamp())},
                          salt=sharing.SALT, compress=True)
    assert Client().get(f"/share/{stale}/").status_code == 410
    # The original value (signed for 1 day) works while both its signature and the row allow it.
    assert Client().get(url).status_code == 200


def test_tampered_or_unknown_links_are_404(report):
    experiment, _ = report
    link = sharing.create_link(experiment)
    value = sharing.signed_value(link)
    forged = signing.dumps({"t": link.token, "e": int((timezone.now() + timedelta(days=900)).timestamp())},
                           salt="another-salt", compress=True)
    for bad in (value[:-2] + ("AA" if not value.endswith("AA") else "BB"), forged, "nonsense",
                signing.dumps({"t": "unknown", "e": 2**40}, salt=sharing.SALT)):
        r = Client().get(f"/share/{bad}/")
        assert r.status_code == 404 and "not valid" in r.content.decode(), bad


def test_create_and_revoke_through_the_report_page(report):
    experiment, _ = report
    analyst, user = _client("ann", "analyst")
    page = analyst.get("/reports/checkout/").content.decode()
    assert 'id="create-share"' in page
    r = analyst.post("/reports/checkout/share/", {"days": "3"})
    assert r.status_code == 302
    link = ShareLink.objects.get()
    assert link.created_by == user and timedelta(days=2, hours=23) < link.expires_at - timezone.now() <= timedelta(days=3)
    url = sharing.url_of(link)
    page = analyst.get("/reports/checkout/").content.decode()
    assert url in page
    assert Client().get(url).status_code == 200
    r = analyst.post(f"/reports/checkout/share/{link.pk}/revoke/")
    assert r.status_code == 302
    link.refresh_from_db()
    assert link.revoked_at is not None and link.revoked_by == user
    gone = Client().get(url)
    assert gone.status_code == 410 and "revoked" in gone.content.decode()
    assert url not in analyst.get("/reports/checkout/").content.decode()


def test_only_export_holders_create_or_revoke(report):
    experiment, _ = report
    link = sharing.create_link(experiment)
    viewer, _ = _client("vic", "viewer")
    assert 'id="create-share"' not in viewer.get("/reports/checkout/").content.decode()
    assert viewer.post("/reports/checkout/share/", {"days": "3"}).status_code == 403
    assert viewer.post(f"/reports/checkout/share/{link.pk}/revoke/").status_code == 403
    assert Client().post("/reports/checkout/share/", {"days": "3"}).status_code == 302  # to the login
    assert ShareLink.objects.count() == 1 and ShareLink.objects.get().revoked_at is None
    pm, _ = _client("pat", "pm")
    assert pm.post("/reports/checkout/share/", {"days": "3"}).status_code == 302
    assert ShareLink.objects.count() == 2


def test_days_are_validated(report):
    experiment, _ = report
    for bad in ("0", "91", "x", ""):
        with pytest.raises(ValidationError):
            sharing.create_link(experiment, days=bad)
    analyst, _ = _client("ann", "analyst")
    analyst.post("/reports/checkout/share/", {"days": "365"})
    assert ShareLink.objects.count() == 0
