"""Who created, started, changed and stopped each experiment is visible in the admin history.

Admin actions name the person (the history's user column and the change reason); API actions
name the key (``api-key:<prefix> (<name>)`` in the change reason), since a key is not a user.
"""
from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from experiments.models import Experiment, Metric

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm(client):
    user = User.objects.create(username="pm-alice", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def metric(db):
    return Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")


def _history_rows(pm, exp) -> list[str]:
    r = pm.get(f"/admin/experiments/experiment/{exp.pk}/history/")
    assert r.status_code == 200
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", r.content.decode(), flags=re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for row in rows]


def test_api_actions_name_the_key(pm, metric):
    from access.services import create_api_key

    obj, raw = create_api_key("deploy-bot", "admin")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    body = {"key": "audited-api", "name": "A", "planned_sample_size": 10000, "variants": [
        {"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}]}
    assert api.post("/api/v1/experiments", body, format="json").status_code == 201
    assert api.patch("/api/v1/experiments/audited-api", {"description": "d"}, format="json").status_code == 200
    for action in ("start", "pause", "resume", "complete"):
        assert api.post(f"/api/v1/experiments/audited-api/{action}", {}, format="json").status_code == 200, action
    exp = Experiment.objects.get(key="audited-api")
    who = f"api-key:{obj.prefix} (deploy-bot)"
    reasons = list(exp.history.order_by("history_date").values_list("history_change_reason", flat=True))
    assert reasons == [f"{verb} by {who}" for verb in ("created", "changed", "started", "paused", "resumed", "completed")]
    rows = " | ".join(_history_rows(pm, exp))
    for verb in ("created", "changed", "started", "completed"):
        assert f"{verb} by {who}" in rows
    assert raw.split(".", 1)[1] not in rows  # the secret part is never shown


def test_admin_actions_name_the_person(pm, metric):
    from experiments import services

    exp = services.create_experiment({
        "key": "audited-admin", "name": "A", "traffic_allocation": 100, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    }, actor="pm-alice")
    for action in ("start", "pause", "resume", "complete"):
        r = pm.post(f"/admin/experiments/experiment/{exp.pk}/transition/{action}/")
        assert r.status_code == 302, action
    exp.refresh_from_db()
    assert exp.status == "completed"
    history = list(exp.history.order_by("history_date"))
    assert [h.history_change_reason for h in history] == [
        "created by pm-alice", "started by pm-alice", "paused by pm-alice", "resumed by pm-alice", "completed by pm-alice"]
    assert all(h.history_user and h.history_user.username == "pm-alice" for h in history[1:])
    rows = _history_rows(pm, exp)
    assert sum("pm-alice" in row for row in rows) >= 5
    assert any("started by pm-alice" in row for row in rows)
    assert any("completed by pm-alice" in row for row in rows)


def test_admin_form_changes_record_the_user(pm, metric):
    from experiments import services

    exp = services.create_experiment({
        "key": "audited-form", "name": "Before", "traffic_allocation": 100, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    })
    from .test_admin_fuzz import page_fields

    url = f"/admin/experiments/experiment/{exp.pk}/change/"
    data = page_fields(pm, url)
    data["name"] = "After"
    assert pm.post(url, data).status_code == 302
    latest = exp.history.latest("history_date")
    assert latest.name == "After" and latest.history_user.username == "pm-alice"
    assert latest.history_change_reason == "changed by pm-alice in the admin"
    assert any("changed by pm-alice in the admin" in row for row in _history_rows(pm, exp))


def test_long_names_still_fit_the_history(pm, metric):
    """The change reason column holds 100 characters: a 64-character variant shipped by a key
    with a 50-character name must still complete (and be recorded), on PostgreSQL too."""
    from access.services import create_api_key

    _, raw = create_api_key("n" * 50, "admin")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    long_variant = "v" * 64
    body = {"key": "k" * 64, "name": "A", "planned_sample_size": 10000, "variants": [
        {"key": "control", "weight": 50, "is_control": True}, {"key": long_variant, "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}]}
    assert api.post("/api/v1/experiments", body, format="json").status_code == 201
    assert api.post(f"/api/v1/experiments/{'k' * 64}/start", {}, format="json").status_code == 200
    r = api.post(f"/api/v1/experiments/{'k' * 64}/complete", {"shipped_variant": long_variant}, format="json")
    assert r.status_code == 200, r.content[:300]
    exp = Experiment.objects.get(key="k" * 64)
    assert exp.status == "completed" and exp.shipped_variant.key == long_variant
    assert exp.history.latest("history_date").history_change_reason.startswith("completed")
