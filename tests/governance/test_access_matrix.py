"""Each role x each page and action: the status code it gets (the pages' counterpart of the API's matrix)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.test import Client

from analysis import tasks
from experiments import services

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "norole", "viewer", "analyst", "pm", "superuser")
K = "gov-exp"
#: (method, url) -> expected status per role, in ROLES order. 302 for anonymous is the login redirect;
#: the admin sends people without staff access to its login too.
MATRIX = {
    ("GET", "/reports/"): (302, 403, 200, 200, 200, 200),
    ("GET", f"/reports/{K}/"): (302, 403, 200, 200, 200, 200),
    ("GET", f"/reports/{K}/export.csv"): (302, 403, 403, 200, 200, 200),
    ("GET", f"/reports/{K}/export.json"): (302, 403, 403, 200, 200, 200),
    ("POST", f"/reports/{K}/refresh/"): (302, 403, 403, 302, 403, 302),
    ("GET", "/admin/experiments/experiment/"): (302, 302, 302, 200, 200, 200),
    ("GET", "/admin/experiments/experiment/add/"): (302, 302, 302, 403, 200, 200),
    ("GET", "/admin/experiments/experiment/{pk}/change/"): (302, 302, 302, 200, 200, 200),
    ("GET", "/admin/experiments/experiment/{pk}/lifecycle/pause/"): (302, 302, 302, 403, 200, 200),
    ("GET", "/admin/experiments/approvalrequest/"): (302, 302, 302, 200, 200, 200),
    ("GET", "/admin/experiments/metric/"): (302, 302, 302, 200, 200, 200),
    ("GET", "/admin/experiments/metric/add/"): (302, 302, 302, 403, 200, 200),
    ("GET", "/admin/analysis/reportsnapshot/"): (302, 302, 302, 200, 403, 200),
    ("GET", "/admin/analysis/event/"): (302, 302, 302, 200, 403, 200),
    ("GET", "/admin/assignment/exposure/"): (302, 302, 302, 200, 403, 200),
    ("GET", "/admin/access/apikey/"): (302, 302, 302, 403, 403, 200),
    ("GET", "/admin/auth/user/"): (302, 302, 302, 403, 403, 200),
}


@pytest.fixture
def world(draft):
    services.start_experiment(draft)
    tasks.request_refresh(draft)  # eager in the embedded mode: a snapshot to export
    return draft


@pytest.fixture
def clients(person):
    from django.contrib.auth.models import User

    out = {"anonymous": Client()}
    for role in ROLES[1:]:
        client = Client()
        if role == "superuser":
            client.force_login(User.objects.create(username="root", is_staff=True, is_superuser=True))
        else:
            client.force_login(person(role, None if role == "norole" else role, staff=role != "norole" and None))
        out[role] = client
    return out


@pytest.mark.parametrize("operation", sorted(MATRIX), ids=lambda op: f"{op[0]} {op[1]}")
def test_page_access_matrix(world, clients, operation):
    method, template = operation
    url = template.replace("{pk}", str(world.pk))
    got = {}
    for role in ROLES:
        r = clients[role].get(url) if method == "GET" else clients[role].post(url)
        got[role] = r.status_code
        if role == "anonymous" and r.status_code == 302:
            assert "login/" in r["Location"]
    assert got == dict(zip(ROLES, MATRIX[operation], strict=True))


def test_viewer_logs_in_on_the_report_login_page(person, world):
    user = person("vera", "viewer")
    user.set_password("vera-long-password-1")
    user.save()
    client = Client()
    r = client.get("/reports/")
    assert r.status_code == 302 and r["Location"].startswith("/login/")
    r = client.post("/login/", {"username": "vera", "password": "vera-long-password-1", "next": "/reports/"})
    assert r.status_code == 302 and r["Location"] == "/reports/"
    page = client.get("/reports/").content.decode()
    assert K in page
    assert "New experiment" not in page and 'href="/admin/"' not in page  # no admin links for a viewer
    detail = client.get(f"/reports/{K}/").content.decode()
    assert 'id="export-csv"' not in detail and 'id="recompute"' not in detail


def test_report_list_lists_what_the_user_may_see(person, world):
    from analysis.pages import visible_experiments

    assert [row["experiment"].key for row in visible_experiments(person("v", "viewer"))] == [K]
    assert visible_experiments(person("nobody")) == []


def test_analyst_sees_recompute_and_export(clients, world):
    detail = clients["analyst"].get(f"/reports/{K}/").content.decode()
    assert 'id="export-csv"' in detail and 'id="recompute"' in detail
    pm_detail = clients["pm"].get(f"/reports/{K}/").content.decode()
    assert 'id="export-csv"' in pm_detail and 'id="recompute"' not in pm_detail


def test_recompute_action_in_the_admin_needs_the_analyst_role(clients, world, monkeypatch):
    calls = []
    monkeypatch.setattr(tasks, "request_refresh", lambda e: calls.append(e.key) or SimpleNamespace(state="SUCCESS"))
    data = {"action": "recompute_selected", "_selected_action": [world.pk]}
    clients["pm"].post("/admin/experiments/experiment/", data)
    assert calls == []
    clients["superuser"].post("/admin/experiments/experiment/", data)
    assert calls == [K]
