"""The admin and the report pages: login required everywhere, CSRF on every form.

Routes are discovered from the URL resolver, so a page added tomorrow is checked tomorrow.
"""
from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import Resolver404, resolve

from .endpoints import page_routes

pytestmark = pytest.mark.django_db

#: The admin's login (staff) and the report pages' login (every role).
LOGIN = ("/admin/login/", "/login/")
#: Pages anyone may open: the login forms and the API's self-description (no data in them).
PUBLIC = {"admin:login", "login", "schema", "api-docs", "api-redoc"}
#: Public only with a valid signed token (a read-only share link): a bogus one is a 404.
TOKEN_PUBLIC = {"report-shared"}
SAMPLES = {
    "object_id": "1", "id": "1", "content_type_id": "1", "app_label": "experiments", "key": "page-exp",
    "action": "start", "url": "no/such/page/",
}


def sample_url(route) -> str:
    """A concrete URL for a route template (``<conv:name>`` or regex groups)."""
    url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLES.get(m[1], "1"), route.template)
    url = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: SAMPLES.get(m[1], "1"), url)
    url = re.sub(r"\([^)]*\)", "1", url)
    return url.replace("^", "").replace("$", "")


def routes() -> list[tuple[object, str]]:
    found = []
    for route in page_routes():
        url = sample_url(route)
        try:
            resolve(url)
        except Resolver404:  # pragma: no cover - the sample values above must resolve
            raise AssertionError(f"sample URL {url} for {route.template} does not resolve") from None
        found.append((route, url))
    return found


def staff(username: str) -> User:
    """A superuser without a password hash (hashing costs ~0.3 s a user)."""
    return User.objects.create(username=username, is_staff=True, is_superuser=True)


@pytest.fixture
def world(db):
    from experiments import services
    from experiments.models import Metric

    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    exp = services.create_experiment({
        "key": "page-exp", "name": "p", "traffic_allocation": 100, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    })
    return exp


def test_every_page_requires_login(world):
    client = Client()
    wrong = []
    for route, url in routes():
        r = client.get(url)
        if route.name in PUBLIC:
            if r.status_code != 200:
                wrong.append((url, r.status_code))
            continue
        if route.name in TOKEN_PUBLIC:
            if r.status_code != 404:
                wrong.append((url, r.status_code))
            continue
        hops = 0
        while r.status_code in (301, 302) and not r["Location"].startswith(LOGIN) and hops < 3:
            r = client.get(r["Location"])
            hops += 1
        if not (r.status_code == 302 and r["Location"].startswith(LOGIN)):
            wrong.append((url, r.status_code, r.get("Location")))
    assert wrong == []
    assert len(routes()) > 50  # the admin, the report pages, the API docs


def test_static_files_are_public(client):
    r = client.get("/static/admin/css/base.css")
    assert r.status_code == 200


def test_staff_is_required_for_the_admin(world):
    client = Client()
    client.force_login(User.objects.create(username="viewer"))
    r = client.get("/admin/experiments/experiment/")
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")


@pytest.fixture
def csrf_admin(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff("csrf"))
    return client


def test_every_form_refuses_a_post_without_csrf_token(csrf_admin):
    wrong = []
    for route, url in routes():
        exempt = getattr(route.callback, "csrf_exempt", False)
        r = csrf_admin.post(url, {"name": "x", "_save": "Save"})
        if exempt:
            # Only the API's self-description is exempt (DRF views): it changes nothing on POST.
            if not (route.name in PUBLIC and r.status_code == 405):
                wrong.append((url, "exempt", r.status_code))
        elif r.status_code != 403 or b"CSRF" not in r.content:
            wrong.append((url, r.status_code))
    assert wrong == []


def test_the_same_post_with_a_token_is_accepted(csrf_admin, world):
    """The CSRF test above can fail: with the token, the report refresh button works."""
    page = csrf_admin.get(f"/reports/{world.key}/")
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else csrf_admin.cookies["csrftoken"].value
    r = csrf_admin.post(f"/reports/{world.key}/refresh/", {"csrfmiddlewaretoken": token})
    assert r.status_code in (200, 302), r.status_code
    r = csrf_admin.post(f"/reports/{world.key}/refresh/")
    assert r.status_code == 403


def test_admin_add_form_refuses_a_post_without_token(csrf_admin, world):
    r = csrf_admin.post("/admin/experiments/metric/add/", {"key": "m", "name": "m", "event": "e", "kind": "count"})
    assert r.status_code == 403
    from experiments.models import Metric

    assert not Metric.objects.filter(key="m").exists()
