"""The admin's sample-size calculator and the warning for metrics whose event never arrived."""
from __future__ import annotations

import math

import pytest
from django.utils import timezone

from analysis.models import Event
from analysis.stats import sample_size

pytestmark = pytest.mark.django_db
URL = "/admin/experiments/experiment/sample-size.json"


def test_uses_traffic_variants_and_primary_metrics(login, purchase):
    pm = login("pat", "pm")
    r = pm.get(URL, {"baseline": "0.1", "mde": "0.05", "alpha": "0.05", "power": "0.8",
                     "n_variants": "3", "primary": "2", "traffic": "25"})
    assert r.status_code == 200
    body = r.json()
    expected = sample_size(0.1, 0.05, alpha=0.025, power=0.8, n_variants=3)  # alpha split over 2 primary metrics
    assert body["total"] == expected["total"] and body["per_variant"] == expected["per_variant"]
    assert body["eligible"] == math.ceil(expected["total"] * 4)  # 25 % of traffic enrolled
    assert body["comparisons"] == 4 and body["alpha_per_comparison"] == pytest.approx(0.0125)
    assert f"{expected['total']:,} in total" in body["text"] and "at 25 % traffic allocation" in body["text"]


def test_bad_input_is_a_400_naming_the_field(login):
    pm = login("pat", "pm")
    assert pm.get(URL, {"baseline": "abc"}).status_code == 400
    r = pm.get(URL, {"baseline": "1.5", "mde": "0.05"})
    assert r.status_code == 400 and r.json()["error"].startswith("baseline")
    for field in ("n_variants", "primary", "alpha"):
        r = pm.get(URL, {field: "nan"})
        assert r.status_code == 400 and r.json()["error"].startswith(field)
    assert pm.get(URL, {"primary": "1e300"}).status_code == 400
    r = pm.get(URL, {"traffic": "0"})
    assert r.status_code == 400 and "traffic" in r.json()["error"]


def test_viewer_cannot_use_it(login):
    assert login("vic", "viewer").get(URL).status_code == 302  # not staff: the admin's login


def test_metric_without_events_gets_a_warning(login, draft, purchase):
    pm = login("pat", "pm")
    page = pm.get(f"/admin/experiments/experiment/{draft.pk}/change/").content.decode()
    assert 'id="silent-metrics"' in page and "no “purchase” event was ever received" in page
    assert "never received: purchase" in pm.get("/admin/experiments/metric/").content.decode()
    Event.objects.create(event_id="e1", unit_id="u1", event="purchase", timestamp=timezone.now())
    page = pm.get(f"/admin/experiments/experiment/{draft.pk}/change/").content.decode()
    assert 'id="silent-metrics"' not in page
    assert "never received" not in pm.get("/admin/experiments/metric/").content.decode()
