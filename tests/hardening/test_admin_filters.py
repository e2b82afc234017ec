"""Every admin changelist answers hostile query strings with a message, never a 500 (issue 10, 11).

``/admin/analysis/reportsnapshot/?computed_at__year=99999999999999999999`` was a 500
(``OverflowError`` in the date hierarchy), and ``?created_at__year=0`` on any model with a date
a 500 (``ValueError`` in the year lookup). The walk covers every registered ``ModelAdmin``
(Django's own user and group admins included), so an admin added later is walked too.
"""
from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.db import models

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"
PART_VALUES = [HUGE, "0", "-5", "abc", "²", "٣٣٣٣٣٣٣"]
GENERIC = [
    f"id={HUGE}", f"id__gt={HUGE}", f"id__in=1,{HUGE}", "id__in=a,b", "o=" + HUGE, "p=" + HUGE, "p=-1",
    "q=%00", "q=" + "x" * 2000, "e=1", "all=", "_facets=1",
]


def _date_fields(model) -> list[str]:
    return [f.name for f in model._meta.get_fields() if isinstance(f, models.DateField | models.DateTimeField)]


def _number_fields(model) -> list[str]:
    return [f.name for f in model._meta.get_fields()
            if isinstance(f, models.FloatField | models.DecimalField | models.IntegerField) and not f.is_relation]


def _text_fields(model) -> list[str]:
    return [f.name for f in model._meta.get_fields() if isinstance(f, models.CharField | models.TextField)]


def hostile_queries(model_admin) -> list[str]:
    model = model_admin.model
    queries = list(GENERIC)
    for name in _date_fields(model)[:3]:
        for value in PART_VALUES:
            queries.append(f"{name}__year={value}")
        queries += [f"{name}__year=2020&{name}__month={HUGE}", f"{name}__year=2020&{name}__month=2&{name}__day=31",
                    f"{name}__year=2020&{name}__month=2&{name}__day={HUGE}", f"{name}__gte=99999-01-01",
                    f"{name}__week_day=0", f"{name}__quarter=5", f"{name}__hour={HUGE}", f"{name}__date={HUGE}"]
    for name in _text_fields(model)[:2]:
        queries += [f"{name}__regex=[", f"{name}=%00"]
    for name in _number_fields(model)[:3]:
        queries += [f"{name}={HUGE}", f"{name}__gt=1e999", f"{name}=nan"]
    return queries


@pytest.fixture
def superuser_client(client, django_user_model):
    from experiments import services
    from experiments.models import Metric

    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    services.create_experiment({
        "key": "walk", "name": "walk", "traffic_allocation": 100,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    })
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    client.raise_request_exception = False
    return client


def test_every_registered_admin_carries_the_guard():
    from access.adminsafety import SafeAdminMixin

    missing = [type(ma).__name__ for ma in admin.site._registry.values() if not isinstance(ma, SafeAdminMixin)]
    assert missing == []


def test_every_changelist_survives_hostile_query_strings(superuser_client):
    failures = []
    walked = 0
    for model, model_admin in admin.site._registry.items():
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for query in hostile_queries(model_admin):
            r = superuser_client.get(f"{url}?{query}")
            walked += 1
            if r.status_code not in (200, 302, 400):  # 400: a lookup the admin forbids (password)
                failures.append((url, query, r.status_code))
    assert walked > 200, walked
    assert failures == []


def test_the_reported_url_redirects_with_a_message(superuser_client):
    r = superuser_client.get(f"/admin/analysis/reportsnapshot/?computed_at__year={HUGE}&q=walk")
    assert r.status_code == 302 and r["Location"] == "/admin/analysis/reportsnapshot/?q=walk"
    shown = [str(m) for m in get_messages(r.wsgi_request)]
    assert any("Ignored the filter computed_at__year=" in m and "from 1 to 9999" in m for m in shown), shown
    r = superuser_client.get(r["Location"])
    assert r.status_code == 200


def test_a_filter_the_database_refuses_is_dropped_with_a_message(superuser_client):
    """An invalid regular expression fails only when the query runs (SQLite: OperationalError,
    PostgreSQL: DataError), after Django's own parameter checks."""
    r = superuser_client.get("/admin/experiments/metric/?key__regex=[")
    assert r.status_code == 302 and r["Location"] == "/admin/experiments/metric/"
    assert any("could not be applied" in str(m) for m in get_messages(r.wsgi_request))
    assert superuser_client.get(r["Location"]).status_code == 200


def test_valid_date_drilldowns_still_work(superuser_client):
    from experiments.models import Experiment

    year = Experiment.objects.get(key="walk").created_at.year
    r = superuser_client.get(f"/admin/experiments/experiment/?created_at__year={year}")
    assert r.status_code == 200 and b"walk" in r.content
    r = superuser_client.get(f"/admin/experiments/experiment/?created_at__year={year - 1}")
    assert r.status_code == 200 and b">walk<" not in r.content


def _variant_form(superuser_client, payload: str) -> dict:
    """The experiment add form (as the page serves it), the second variant carrying ``payload``."""
    from .test_admin_fuzz import experiment_add_data

    data = experiment_add_data(superuser_client)
    data.update({"key": "admin-json", "variants-1-payload": payload})
    return data


@pytest.mark.parametrize("payload, message", [
    ('{"a": ' * 5000 + "1" + "}" * 5000, "Nested deeper than 32 levels"),
    ("[" * 100 + "]" * 100, "Nested deeper than 32 levels"),
    ('{"x": NaN}', "NaN is not valid JSON"),
    ('{"x": 1e400}', "Must be a finite number"),
])
def test_admin_json_boxes_refuse_deep_and_non_finite_json(superuser_client, payload, message):
    """A payload box 5,000 levels deep made Django's JSON form field raise RecursionError."""
    from experiments.models import Experiment

    r = superuser_client.post("/admin/experiments/experiment/add/", _variant_form(superuser_client, payload))
    assert r.status_code == 200, (r.status_code, r.content[:300])
    assert message in r.content.decode()
    assert not Experiment.objects.filter(key="admin-json").exists()


def test_admin_json_box_accepts_ordinary_payloads(superuser_client):
    from experiments.models import Experiment

    data = _variant_form(superuser_client, json.dumps({"color": "green", "sizes": [1, 2.5, -1e300]}))
    r = superuser_client.post("/admin/experiments/experiment/add/", data)
    assert r.status_code == 302, r.content.decode()[:2000]
    assert Experiment.objects.get(key="admin-json").variants.get(key="green").payload["sizes"][:2] == [1, 2.5]
