"""The product manager's admin, through the Django test client: forms, inlines, actions, history."""
import pytest
from django.contrib.auth.models import User

from experiments import services
from experiments.models import Experiment

from .conftest import experiment_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm(client):
    user = User.objects.create_superuser("pm", "pm@example.com", "pw-for-tests")
    client.force_login(user)
    return client


def management(prefix: str, total: int, initial: int = 0) -> dict:
    return {f"{prefix}-TOTAL_FORMS": str(total), f"{prefix}-INITIAL_FORMS": str(initial),
            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"}


def add_form(metrics, *, weights=(50, 50), controls=(True, False), primary=True, key="admin-exp", traffic="100"):
    data = {
        "key": key, "name": "From the admin", "hypothesis": "h", "description": "",
        "traffic_allocation": traffic, "salt": "", "layer": "", "layer_share": "",
        "significance_level": "0.05", "correction": "holm", "cuped": "on",
        "planned_sample_size": "", "planned_duration_days": "",
        **management("variants", 2), **management("experiment_metrics", 1),
        **management("targeting_rules", 1), **management("overrides", 0),
        "targeting_rules-0-attribute": "country", "targeting_rules-0-operator": "in",
        "targeting_rules-0-values": '["CN", "US"]', "targeting_rules-0-position": "0",
        "experiment_metrics-0-metric": str(metrics["purchase"].pk),
        "experiment_metrics-0-role": "primary" if primary else "secondary",
        "experiment_metrics-0-position": "0",
        "experiment_metrics-0-non_inferiority_margin": "0.02",
    }
    for i, (key_, weight, control) in enumerate(zip(("control", "green"), weights, controls, strict=True)):
        data.update({f"variants-{i}-key": key_, f"variants-{i}-name": key_, f"variants-{i}-weight": str(weight),
                     f"variants-{i}-payload": "{}", f"variants-{i}-position": str(i)})
        if control:
            data[f"variants-{i}-is_control"] = "on"
    return data


def test_admin_requires_login(client):
    r = client.get("/admin/experiments/experiment/")
    assert r.status_code == 302 and "/admin/login/" in r["Location"]


def test_create_experiment_in_admin(pm, metrics):
    r = pm.post("/admin/experiments/experiment/add/", add_form(metrics))
    assert r.status_code == 302, r.context["errors"] if r.context else r.content[:500]
    exp = Experiment.objects.get(key="admin-exp")
    assert exp.owner.username == "pm"
    assert exp.variants.count() == 2 and exp.targeting_rules.get().values == ["CN", "US"]
    assert exp.history.first().history_user.username == "pm"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weights": (50, 40)}, "sum to 100"),
        ({"controls": (False, False)}, "Exactly one variant must be the control"),
        ({"controls": (True, True)}, "Exactly one variant must be the control"),
        ({"weights": (100, 0)}, "positive weight"),
        ({"traffic": "120"}, "less than or equal to 100"),
        ({"key": "Bad Key"}, "lowercase"),
    ],
)
def test_invalid_experiment_shows_messages_not_500(pm, metrics, kwargs, message):
    r = pm.post("/admin/experiments/experiment/add/", add_form(metrics, **kwargs))
    assert r.status_code == 200
    assert message in r.content.decode()
    assert not Experiment.objects.filter(key="admin-exp").exists()


def test_invalid_targeting_values_show_message(pm, metrics):
    data = add_form(metrics)
    data["targeting_rules-0-operator"] = "equals"
    r = pm.post("/admin/experiments/experiment/add/", data)
    assert r.status_code == 200 and "exactly one value" in r.content.decode()


def test_start_action_and_validation_messages(pm, metrics):
    exp = services.create_experiment(experiment_data(metrics=[{"metric": "revenue", "role": "secondary"}]))
    r = pm.post("/admin/experiments/experiment/", {"action": "start_selected", "_selected_action": [exp.pk]}, follow=True)
    assert "At least one primary metric" in r.content.decode()
    assert Experiment.objects.get().status == "draft"
    services.update_experiment(exp, {"metrics": [{"metric": "purchase", "role": "primary"}]})
    r = pm.post(f"/admin/experiments/experiment/{exp.pk}/transition/start/", follow=True)
    assert r.status_code == 200
    exp.refresh_from_db()
    assert exp.status == "running"
    assert exp.history.filter(history_change_reason="started by pm").exists()


def test_running_experiment_locks_fields(pm, make_experiment):
    exp = services.start_experiment(make_experiment())
    r = pm.get(f"/admin/experiments/experiment/{exp.pk}/change/")
    assert r.status_code == 200
    form = r.context["adminform"].form
    assert "key" not in form.fields and "salt" not in form.fields and "layer" not in form.fields
    assert 'id="variants-0-weight"' not in r.content.decode()  # variants shown read-only
    assert "Pause" in r.content.decode() and "Complete" in r.content.decode()
    # Traffic may not shrink:
    data = {
        "name": exp.name, "hypothesis": "", "description": "", "traffic_allocation": "50",
        "significance_level": "0.05", "correction": "holm", "cuped": "on",
        "planned_sample_size": "", "planned_duration_days": "",
        **management("variants", 2, 2), **management("experiment_metrics", 1, 1),
        **management("targeting_rules", 1, 1), **management("overrides", 0),
    }
    em = exp.experiment_metrics.get()
    data.update({"experiment_metrics-0-id": em.pk, "experiment_metrics-0-experiment": exp.pk,
                 "experiment_metrics-0-metric": em.metric_id, "experiment_metrics-0-role": "primary",
                 "experiment_metrics-0-position": "0", "experiment_metrics-0-non_inferiority_margin": "0.02"})
    rule = exp.targeting_rules.get()
    data.update({"targeting_rules-0-id": rule.pk, "targeting_rules-0-experiment": exp.pk,
                 "targeting_rules-0-attribute": "country", "targeting_rules-0-operator": "in",
                 "targeting_rules-0-values": '["CN"]', "targeting_rules-0-position": "0"})
    r = pm.post(f"/admin/experiments/experiment/{exp.pk}/change/", data)
    assert r.status_code == 200 and "traffic may only grow" in r.content.decode()


def test_history_page_shows_who(pm, make_experiment):
    exp = make_experiment()
    services.start_experiment(exp, actor="pm")
    r = pm.get(f"/admin/experiments/experiment/{exp.pk}/history/")
    assert r.status_code == 200
    assert "started by pm" in r.content.decode()


def test_transition_view_rejects_get(pm, make_experiment):
    exp = make_experiment()
    assert pm.get(f"/admin/experiments/experiment/{exp.pk}/transition/start/").status_code == 405


def test_metric_and_layer_admin_pages(pm, metrics, layer):
    for url in ("/admin/experiments/metric/", "/admin/experiments/layer/", "/admin/experiments/metric/add/",
                f"/admin/experiments/layer/{layer.pk}/change/", "/admin/experiments/experiment/?status__exact=draft"):
        assert pm.get(url).status_code == 200, url
    r = pm.post("/admin/experiments/metric/add/", {"key": "rpo", "name": "RPO", "event": "purchase", "kind": "ratio",
                                                   "numerator_aggregation": "sum", "denominator_aggregation": "count",
                                                   "direction": "increase"})
    assert r.status_code == 200 and "Ratio metrics need a denominator event" in r.content.decode()


def test_only_drafts_can_be_deleted(pm, make_experiment):
    draft = make_experiment(key="draft-one")
    running = services.start_experiment(make_experiment(key="running-one"))
    assert pm.get(f"/admin/experiments/experiment/{running.pk}/delete/").status_code == 403
    assert pm.post(f"/admin/experiments/experiment/{running.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Experiment.objects.filter(pk=running.pk).exists()
    r = pm.post(f"/admin/experiments/experiment/{draft.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302 and not Experiment.objects.filter(pk=draft.pk).exists()


def test_bulk_delete_spares_started_experiments(pm, make_experiment):
    draft = make_experiment(key="draft-two")
    running = services.start_experiment(make_experiment(key="running-two"))
    r = pm.post("/admin/experiments/experiment/", {
        "action": "delete_selected", "_selected_action": [draft.pk, running.pk], "post": "yes"}, follow=True)
    # Django's action checks each object's delete permission (403); a started experiment's phases
    # are PROTECTed, which Django reports first, on its "Cannot delete" page.
    assert r.status_code == 403 or (r.status_code == 200 and "Cannot delete experiments" in r.content.decode())
    assert Experiment.objects.count() == 2
    r = pm.post("/admin/experiments/experiment/", {
        "action": "delete_selected", "_selected_action": [draft.pk], "post": "yes"}, follow=True)
    assert r.status_code == 200
    assert list(Experiment.objects.values_list("key", flat=True)) == ["running-two"]
