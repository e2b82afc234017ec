"""Browser-only middleware steps aside for the JSON API (config/middleware.py) and nowhere else."""
import unittest.mock

import pytest
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def spies():
    """Spies that still call the real methods."""
    with (unittest.mock.patch.object(SessionMiddleware, "process_request", autospec=True,
                                     side_effect=SessionMiddleware.process_request) as session,
          unittest.mock.patch.object(MessageMiddleware, "process_request", autospec=True,
                                     side_effect=MessageMiddleware.process_request) as messages):
        yield session, messages


def test_api_requests_skip_browser_middleware_but_keep_security_headers(api_client_for, spies):
    session, messages = spies
    response = api_client_for("client").post("/api/v1/assignments", {"unit_id": "u-1"}, format="json")
    assert response.status_code == 200
    assert not session.called and not messages.called
    assert "Cookie" not in response.get("Vary", "")
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still runs
    assert response["Content-Length"]  # CommonMiddleware still runs


def test_pages_and_admin_keep_sessions_csrf_and_clickjacking_protection(spies):
    session, messages = spies
    response = Client().get("/admin/login/")
    assert session.called and messages.called
    assert response["X-Frame-Options"] == "DENY"


def test_admin_post_without_csrf_token_is_still_refused():
    response = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "a", "password": "b"})
    assert response.status_code == 403


def test_cors_preflight_on_the_api_needs_no_key(client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example.com"]
    response = client.options("/api/v1/assignments", HTTP_ORIGIN="https://shop.example.com",
                              HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                              HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://shop.example.com"
