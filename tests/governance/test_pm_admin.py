"""A product manager with only the PM role takes an experiment from draft to shipped in the admin."""
from __future__ import annotations

import pytest

from experiments.models import Experiment, Override

from .conftest import change_form_data, management

pytestmark = pytest.mark.django_db

ADD = "/admin/experiments/experiment/add/"


def add_form(purchase) -> dict:
    data = {
        "key": "pm-exp", "name": "PM's experiment", "hypothesis": "Green sells", "description": "",
        "owner": "", "team": "", "traffic_allocation": "50", "salt": "", "layer": "", "layer_share": "",
        "significance_level": "0.05", "correction": "holm", "cuped": "on",
        "planned_sample_size": "", "planned_duration_days": "",
        **management("variants", 3), **management("experiment_metrics", 1),
        **management("targeting_rules", 1), **management("overrides", 1),
        "targeting_rules-0-attribute": "country", "targeting_rules-0-operator": "in",
        "targeting_rules-0-values": '["CN", "US"]', "targeting_rules-0-position": "0",
        "experiment_metrics-0-metric": str(purchase.pk), "experiment_metrics-0-role": "primary",
        "experiment_metrics-0-position": "0", "experiment_metrics-0-non_inferiority_margin": "0.02",
        "overrides-0-unit_id": "qa-tester-1", "overrides-0-variant_key": "green", "overrides-0-note": "QA phone",
    }
    for i, (key, weight) in enumerate([("control", "34"), ("green", "33"), ("blue", "33")]):
        data.update({f"variants-{i}-key": key, f"variants-{i}-name": key, f"variants-{i}-weight": weight,
                     f"variants-{i}-payload": "{}", f"variants-{i}-position": str(i)})
    data["variants-0-is_control"] = "on"
    return data


def test_pm_role_sees_every_inline_on_the_add_page(login, purchase):
    pm = login("pat", "pm")
    page = pm.get(ADD)
    assert page.status_code == 200
    html = page.content.decode()
    for prefix in ("variants", "experiment_metrics", "targeting_rules", "overrides"):
        assert f'name="{prefix}-TOTAL_FORMS"' in html, prefix
    assert 'id="sample-size-helper"' in html  # the calculator is on the Add page too


def test_pm_takes_an_experiment_from_draft_to_shipped(login, purchase):
    pm = login("pat", "pm")
    r = pm.post(ADD, add_form(purchase))
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    exp = Experiment.objects.get(key="pm-exp")
    assert exp.owner.username == "pat" and exp.variants.count() == 3
    override = Override.objects.get(experiment=exp)  # a QA override added on the Add page
    assert override.variant.key == "green"
    change = f"/admin/experiments/experiment/{exp.pk}/change/"

    # Start: the button submits the form, so the planned sample size just typed is saved first...
    r = pm.post(change, change_form_data(exp, planned_sample_size="24000", _lifecycle="start"))
    confirm = f"/admin/experiments/experiment/{exp.pk}/lifecycle/start/"
    assert r.status_code == 302 and r["Location"] == confirm
    exp.refresh_from_db()
    assert exp.planned_sample_size == 24000 and exp.status == "draft"
    # ... then a page says what will happen, and only confirming starts it.
    page = pm.get(confirm).content.decode()
    assert "Start: 3 variants (control 34 %, green 33 %, blue 33 %), 50 % of traffic." in page
    assert "Analysis plan frozen" in page and "24,000 units" in page
    r = pm.post(f"/admin/experiments/experiment/{exp.pk}/transition/start/", follow=True)
    assert "Experiment &#x27;pm-exp&#x27; started." in r.content.decode()
    exp.refresh_from_db()
    assert exp.status == "running"

    for action, status in (("pause", "paused"), ("resume", "running")):
        r = pm.post(change, change_form_data(exp, _lifecycle=action))
        assert r["Location"].endswith(f"/lifecycle/{action}/")
        assert pm.get(r["Location"]).status_code == 200
        pm.post(f"/admin/experiments/experiment/{exp.pk}/transition/{action}/")
        exp.refresh_from_db()
        assert exp.status == status

    r = pm.post(change, change_form_data(exp, _lifecycle="complete"))
    page = pm.get(r["Location"]).content.decode()
    assert 'value="green"' in page and "every unit" in page
    pm.post(f"/admin/experiments/experiment/{exp.pk}/transition/complete/", {"shipped_variant": "green"})
    exp.refresh_from_db()
    assert exp.status == "completed" and exp.shipped_variant.key == "green"


def test_start_with_unsaved_edits_never_drops_them(login, draft):
    """Regression: the Start button used to post its own empty form and drop typed edits."""
    pm = login("pat", "pm")
    change = f"/admin/experiments/experiment/{draft.pk}/change/"
    html = pm.get(change).content.decode()
    # The lifecycle buttons belong to the change form itself (no separate form="transition-..." forms).
    assert 'name="_lifecycle" value="start"' in html and 'form="transition-start"' not in html
    r = pm.post(change, change_form_data(draft, planned_sample_size="12345", _lifecycle="start"))
    assert r.status_code == 302
    draft.refresh_from_db()
    assert draft.planned_sample_size == 12345 and draft.status == "draft"


def test_invalid_edits_with_a_lifecycle_button_show_errors_and_start_nothing(login, draft):
    pm = login("pat", "pm")
    change = f"/admin/experiments/experiment/{draft.pk}/change/"
    r = pm.post(change, change_form_data(draft, traffic_allocation="150", _lifecycle="start"))
    assert r.status_code == 200 and r.context["adminform"].form.errors
    draft.refresh_from_db()
    assert draft.status == "draft" and draft.traffic_allocation == 50


def test_lifecycle_buttons_come_before_the_fields(login, draft):
    html = login("pat", "pm").get(f"/admin/experiments/experiment/{draft.pk}/change/").content.decode()
    assert html.index('id="lifecycle-start"') < html.index('id="id_key"')
    assert html.index('id="sample-size-helper"') < html.index('id="id_key"')


def test_override_with_an_unknown_variant_key_is_refused_with_a_message(login, purchase):
    pm = login("pat", "pm")
    data = add_form(purchase)
    data["overrides-0-variant_key"] = "purple"
    r = pm.post(ADD, data)
    assert r.status_code == 200
    assert "No variant &#x27;purple&#x27; in this experiment" in r.content.decode()
    assert not Experiment.objects.filter(key="pm-exp").exists()


def test_analyst_cannot_run_lifecycle_actions(login, draft):
    analyst = login("ana", "analyst")
    html = analyst.get(f"/admin/experiments/experiment/{draft.pk}/change/").content.decode()
    assert 'id="lifecycle-start"' not in html
    assert analyst.get(f"/admin/experiments/experiment/{draft.pk}/lifecycle/start/").status_code == 403
    analyst.post(f"/admin/experiments/experiment/{draft.pk}/transition/start/")
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_bulk_action_checks_the_lifecycle_permission(person, draft):
    from django.contrib.auth.models import Permission
    from django.test import Client

    user = person("editor", staff=True)  # may change experiments, but has no role
    user.user_permissions.add(*Permission.objects.filter(codename__in=["change_experiment", "view_experiment"]))
    client = Client()
    client.force_login(user)
    client.post("/admin/experiments/experiment/", {"action": "start_selected", "_selected_action": [draft.pk]})
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_qa_override_on_a_running_experiment_uses_the_saved_variants(login, draft):
    from experiments import services

    services.start_experiment(draft)
    draft.refresh_from_db()
    pm = login("pat", "pm")
    data = change_form_data(draft)
    for key in [k for k in data if k.startswith("variants-")]:  # a locked inline posts no rows
        del data[key]
    data.update(management("variants", 0))
    data.update({**management("overrides", 1), "overrides-0-unit_id": "qa-2", "overrides-0-variant_key": "green"})
    r = pm.post(f"/admin/experiments/experiment/{draft.pk}/change/", data)
    assert r.status_code == 302, r.content.decode()[:2000]
    assert Override.objects.get(unit_id="qa-2").variant.key == "green"
