"""Admin: subscriptions and deliveries are visible; deliveries are read-only; the secret is hidden."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from automation.models import AlertSubscription, Delivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscription():
    sub = AlertSubscription.objects.create(channel="webhook", target="https://hooks.example.com/x")
    Delivery.objects.create(subscription=sub, alert_key="srm", payload={"condition": "srm"}, status="delivered",
                            attempts=1, response_code=200)
    return sub


def test_superuser_sees_subscriptions_deliveries_and_the_secret(admin_client, subscription):
    assert "hooks.example.com" in admin_client.get("/admin/automation/alertsubscription/").content.decode()
    page = admin_client.get(f"/admin/automation/alertsubscription/{subscription.pk}/change/").content.decode()
    assert subscription.secret in page
    deliveries = admin_client.get("/admin/automation/delivery/")
    assert deliveries.status_code == 200 and "srm" in deliveries.content.decode()
    delivery = Delivery.objects.get()
    assert admin_client.post(f"/admin/automation/delivery/{delivery.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.get("/admin/automation/delivery/add/").status_code == 403


def test_staff_without_superuser_do_not_see_the_secret(client, subscription):
    user = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="automation"))
    client.force_login(user)
    page = client.get(f"/admin/automation/alertsubscription/{subscription.pk}/change/").content.decode()
    assert subscription.secret not in page and "readable by superusers only" in page


def test_creating_a_webhook_shows_its_secret_once(admin_client):
    response = admin_client.post("/admin/automation/alertsubscription/add/",
                                 {"channel": "webhook", "target": "https://hooks.example.com/new", "active": "on"},
                                 follow=True)
    sub = AlertSubscription.objects.get(target="https://hooks.example.com/new")
    assert sub.secret in response.content.decode()


def test_a_file_url_is_refused_with_a_readable_message(admin_client):
    response = admin_client.post("/admin/automation/alertsubscription/add/",
                                 {"channel": "webhook", "target": "file:///etc/passwd", "active": "on"})
    assert response.status_code == 200 and "Enter an http:// or https:// URL." in response.content.decode()
    assert not AlertSubscription.objects.exists()


def test_scheduling_needs_the_permission_to_do_the_action(client):
    from django.contrib.auth.models import Group

    from tests.analysis.reporting import make_experiment

    experiment = make_experiment("perm-sched")
    user = get_user_model().objects.create_user("viewer2", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="automation",
                                                         codename__endswith="scheduledaction"))
    client.force_login(user)
    data = {"experiment": experiment.pk, "action": "complete", "run_at_0": "2030-01-01", "run_at_1": "10:00:00"}
    response = client.post("/admin/automation/scheduledaction/add/", data)
    assert response.status_code == 200 and "you may not schedule it" in response.content.decode()
    pm = get_user_model().objects.create_user("pm2", password="pw", is_staff=True)
    pm.groups.add(Group.objects.get(name="Product manager"))
    client.force_login(pm)
    response = client.post("/admin/automation/scheduledaction/add/", data)
    assert response.status_code == 302
    from automation.models import ScheduledAction

    assert ScheduledAction.objects.get().created_by == pm
