"""Issue 10 #4: a view-only staff account changes nothing through any admin action, button or form.

The walk is generic: every registered model admin, every action a superuser is offered, every URL
its ``get_urls`` declares (custom buttons included), posted by a user holding only view
permissions. A new action or button is covered without editing this test.
"""
from __future__ import annotations

import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import RequestFactory
from django.utils import timezone

from access.services import create_api_key
from analysis.models import Event, ReportSnapshot
from assignment.models import Exposure
from experiments import services
from experiments.models import Experiment, Override

from .conftest import experiment_data

pytestmark = pytest.mark.django_db


def state() -> dict:
    """Every row of every model (historical tables included): what "nothing changed" compares."""
    return {
        m._meta.label: sorted(map(repr, m.objects.order_by("pk").values()))
        for m in apps.get_models() if m._meta.app_label not in ("sessions", "contenttypes", "admin")
    }


@pytest.fixture
def world(metrics, layer):
    draft = services.create_experiment(experiment_data(key="draft-one", layer=layer, layer_share=20))
    running = services.start_experiment(services.create_experiment(experiment_data(key="running-one")))
    paused = services.pause_experiment(services.start_experiment(services.create_experiment(experiment_data(key="paused-one"))))
    completed = services.complete_experiment(
        services.start_experiment(services.create_experiment(experiment_data(key="done-one"))))
    Override.objects.create(experiment=draft, unit_id="qa-1", variant=draft.variants.first())
    now = timezone.now()
    Exposure.objects.create(experiment=running, variant=running.variants.first(), unit_id="u1", first_seen=now, last_seen=now)
    ReportSnapshot.objects.create(experiment=running, computed_at=now, payload={})
    Event.objects.create(event_id="e1", unit_id="u1", event="purchase", timestamp=now)
    create_api_key("k", "admin")
    return [draft, running, paused, completed]


@pytest.fixture
def viewer(client):
    user = User.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    return client


def _superuser_request():
    request = RequestFactory().get("/admin/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    return request


def test_the_walk_covers_the_known_actions_and_buttons():
    actions = {name for ma in admin.site._registry.values() for name in ma.get_actions(_superuser_request())}
    assert {"start_selected", "pause_selected", "resume_selected", "complete_selected", "archive_selected",
            "recompute_selected", "delete_selected"} <= actions
    names = {p.name for ma in admin.site._registry.values() for p in ma.get_urls()}
    assert {"experiments_experiment_transition", "experiments_experiment_recompute"} <= names


def test_view_only_staff_changes_nothing_through_any_action(world, viewer):
    before = state()
    superuser = _superuser_request()
    posted = 0
    for model, model_admin in admin.site._registry.items():
        pks = [str(pk) for pk in model.objects.values_list("pk", flat=True)]
        if not pks:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for name in model_admin.get_actions(superuser):
            response = viewer.post(url, {"action": name, "_selected_action": pks, "index": "0", "post": "yes"})
            assert response.status_code in (200, 302, 403), (url, name, response.status_code)
            posted += 1
    assert posted >= 8
    assert state() == before


def _urls_of(model, model_admin, obj, history_id) -> list[str]:
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    urls = []
    for pattern in model_admin.get_urls():
        route = str(pattern.pattern)
        if pattern.name is None:
            continue
        if route.startswith("^"):  # simple-history's per-record page: ^([^/]+)/history/([^/]+)/$
            route = re.sub(r"\^\(\[\^/\]\+\)/history/\(\[\^/\]\+\)/\$", f"{obj.pk}/history/{history_id}/", route)
        route = route.replace("<path:object_id>", str(obj.pk)).replace("<id>", str(obj.pk))
        if "<str:action>" in route:
            urls += [base + route.replace("<str:action>", a) for a in services.TRANSITION_FUNCTIONS]
        else:
            urls.append(base + route)
    return urls


def test_view_only_staff_changes_nothing_through_any_button_or_form(world, viewer):
    before = state()
    walked = set()
    for model, model_admin in admin.site._registry.items():
        for obj in model.objects.all()[:4]:
            history = getattr(obj, "history", None)
            history_id = history.first().history_id if history is not None and history.exists() else 1
            for url in _urls_of(model, model_admin, obj, history_id):
                for body in ({}, {"post": "yes", "shipped_variant": "green", "name": "changed", "key": "changed"}):
                    response = viewer.post(url, body)
                    assert response.status_code in (200, 302, 403, 404, 405), (url, response.status_code)
                walked.add(url)
    assert any("/transition/start/" in u for u in walked) and any("/recompute/" in u for u in walked)
    assert state() == before


def test_the_same_actions_work_for_a_user_with_change_permission(world, client):
    user = User.objects.create_user("editor", "e@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        codename__in=["view_experiment", "change_experiment", "start_experiment"]))
    client.force_login(user)
    draft = Experiment.objects.get(key="draft-one")
    client.post("/admin/experiments/experiment/", {"action": "start_selected", "_selected_action": [draft.pk], "index": "0"})
    draft.refresh_from_db()
    assert draft.status == "running"
    client.post(f"/admin/experiments/experiment/{draft.pk}/transition/pause/")
    draft.refresh_from_db()
    assert draft.status == "paused"
