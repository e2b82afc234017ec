"""Issue 10 #5: nothing an edit or a delete does may take exposures, snapshots or a shipped variant with it."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db.models import ProtectedError
from django.utils import timezone

from analysis.models import ReportSnapshot
from assignment.models import Exposure
from experiments import services
from experiments.models import Experiment, Override, Variant

from .conftest import experiment_data

pytestmark = pytest.mark.django_db

VARIANTS = experiment_data()["variants"]


def expose(experiment: Experiment, n: int = 10) -> None:
    now = timezone.now()
    variants = list(experiment.variants.all())
    Exposure.objects.bulk_create(
        Exposure(experiment=experiment, variant=variants[i % 2], unit_id=f"u{i}", first_seen=now, last_seen=now)
        for i in range(n)
    )


@pytest.fixture
def completed(make_experiment):
    exp = services.start_experiment(make_experiment())
    expose(exp)
    return services.complete_experiment(exp, shipped_variant="green")


def test_patching_the_same_variants_back_keeps_exposures_and_the_shipped_variant(admin_api, completed):
    """The reported defect: 200, units dropped to 0, shipped variant became null."""
    r = admin_api.patch(f"/api/v1/experiments/{completed.key}", {"variants": VARIANTS}, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["shipped_variant"] == "green"
    assert Exposure.objects.filter(experiment=completed).count() == 10
    completed.refresh_from_db()
    assert completed.shipped_variant.key == "green"


@pytest.mark.parametrize("status", ["running", "paused", "completed"])
@pytest.mark.parametrize("variants", [
    [{"key": "control", "weight": 20, "is_control": True}, {"key": "green", "weight": 80}],
    [{"key": "control", "weight": 50, "is_control": True}, {"key": "blue", "weight": 50}],
    [*VARIANTS[:1], {**VARIANTS[1], "payload": {"color": "red"}}],
    [{"key": "control", "weight": 50, "is_control": True}, {"key": "green", "weight": 25}, {"key": "x", "weight": 25}],
])
def test_variants_of_a_started_experiment_are_fixed(admin_api, make_experiment, status, variants):
    exp = services.start_experiment(make_experiment())
    expose(exp)
    if status == "paused":
        services.pause_experiment(exp)
    elif status == "completed":
        services.complete_experiment(exp, shipped_variant="green")
    ids = sorted(Variant.objects.filter(experiment=exp).values_list("pk", flat=True))
    r = admin_api.patch(f"/api/v1/experiments/{exp.key}", {"variants": variants}, format="json")
    assert r.status_code == 400
    assert "start a new phase" in " ".join(r.json()["variants"])
    assert sorted(Variant.objects.filter(experiment=exp).values_list("pk", flat=True)) == ids
    assert Exposure.objects.filter(experiment=exp).count() == 10


def test_draft_variants_are_updated_in_place(make_experiment):
    exp = make_experiment()
    ids = dict(exp.variants.values_list("key", "pk"))
    services.update_experiment(exp, {"variants": [
        {"key": "green", "weight": 70, "payload": {"color": "lime"}},
        {"key": "control", "weight": 30, "is_control": True},
    ]})
    rows = {v.key: v for v in exp.variants.all()}
    assert {k: v.pk for k, v in rows.items()} == ids
    assert rows["green"].weight == 70 and rows["green"].payload == {"color": "lime"} and rows["green"].position == 0
    assert Variant.history.filter(history_type="-").count() == 0


def test_draft_variant_with_an_override_is_not_silently_dropped(make_experiment):
    exp = make_experiment()
    Override.objects.create(experiment=exp, unit_id="qa-1", variant=exp.variants.get(key="green"))
    with pytest.raises(services.ValidationError) as err:
        services.update_experiment(exp, {"variants": [
            {"key": "control", "weight": 50, "is_control": True}, {"key": "blue", "weight": 50},
        ]})
    assert "variants" in err.value.message_dict and "overrides" in err.value.message_dict["variants"][0]
    assert Override.objects.filter(unit_id="qa-1").exists()


def test_deletes_that_would_lose_data_are_refused(completed):
    green = completed.variants.get(key="green")
    with pytest.raises(ProtectedError):
        green.delete()  # exposures and the shipped variant refer to it
    ReportSnapshot.objects.create(experiment=completed, computed_at=timezone.now(), payload={})
    Exposure.objects.all().delete()
    with pytest.raises(ProtectedError):
        completed.delete()  # its snapshots and shipped variant
    assert Experiment.objects.filter(pk=completed.pk).exists()


def test_a_draft_without_data_can_still_be_deleted(make_experiment):
    exp = make_experiment()
    exp.delete()
    assert not Variant.objects.exists()


def test_protected_error_is_a_409_json(rf):
    from access.exceptions import json_exception_handler

    response = json_exception_handler(ProtectedError("x", [Exposure(unit_id="u")]), {})
    assert response.status_code == 409 and "exposures" in response.data["detail"]


@pytest.fixture
def superuser_client(client):
    client.force_login(User.objects.create_superuser("boss", "b@example.com", "pw"))
    return client


def test_admin_delete_of_an_experiment_with_data_is_a_readable_refusal(superuser_client, make_experiment):
    exp = make_experiment()
    expose(exp)  # e.g. test traffic recorded through an override before the start
    r = superuser_client.post(f"/admin/experiments/experiment/{exp.pk}/delete/", {"post": "yes"})
    assert r.status_code == 200
    assert b"cannot delete" in r.content.lower()
    assert Experiment.objects.filter(pk=exp.pk).exists()


def test_admin_inline_delete_of_a_variant_with_an_override_is_a_readable_refusal(superuser_client, make_experiment):
    from .test_admin import management

    exp = make_experiment()
    green = exp.variants.get(key="green")
    Override.objects.create(experiment=exp, unit_id="qa-1", variant=green)
    r = superuser_client.get(f"/admin/experiments/experiment/{exp.pk}/change/")
    assert r.status_code == 200
    form = r.context["adminform"].form
    data = {k: ("" if v is None else v) for k, v in form.initial.items() if k in form.fields}
    data.update({"key": exp.key, "salt": exp.salt, "owner": "", "layer": "", "layer_share": "", "cuped": "on"})
    data.update(management("variants", 3, 2))
    for i, v in enumerate(exp.variants.all()):
        data.update({f"variants-{i}-id": v.pk, f"variants-{i}-experiment": exp.pk, f"variants-{i}-key": v.key,
                     f"variants-{i}-name": v.name, f"variants-{i}-weight": "50", f"variants-{i}-payload": "{}",
                     f"variants-{i}-position": i, f"variants-{i}-is_control": "on" if v.is_control else ""})
    data["variants-1-DELETE"] = "on"
    data.update({"variants-2-key": "blue", "variants-2-name": "blue", "variants-2-weight": "50",
                 "variants-2-payload": "{}", "variants-2-position": "2"})
    for prefix, n in (("experiment_metrics", 0), ("targeting_rules", 0)):
        data.update(management(prefix, n))
    data.update(management("overrides", 1, 1))
    o = Override.objects.get()
    data.update({"overrides-0-id": o.pk, "overrides-0-experiment": exp.pk, "overrides-0-unit_id": "qa-1",
                 "overrides-0-variant": green.pk, "overrides-0-note": ""})
    r = superuser_client.post(f"/admin/experiments/experiment/{exp.pk}/change/", data)
    assert r.status_code == 200  # the form again, with the message; not a 500
    errors = " ".join(
        [str(e) for fs in r.context["inline_admin_formsets"] for e in [*fs.formset.errors, fs.formset.non_form_errors()]]
        + [str(r.context["adminform"].form.errors)]
    )
    assert "protected" in errors.lower() and "override" in errors.lower(), errors
    assert exp.variants.filter(key="green").exists() and Override.objects.filter(unit_id="qa-1").exists()


def change_form_data(client, exp) -> dict:
    """The admin change form of ``exp`` as the browser would post it back unchanged."""
    page = client.get(f"/admin/experiments/experiment/{exp.pk}/change/")
    form = page.context["adminform"].form
    data = {k: ("" if v is None else getattr(v, "pk", v)) for k, v in form.initial.items() if k in form.fields}
    data["cuped"] = "on" if form.initial.get("cuped") else ""
    for fs in page.context["inline_admin_formsets"]:
        mgmt = fs.formset.management_form
        data.update({mgmt.add_prefix(k): v for k, v in mgmt.initial.items()})
        for f in fs.formset.forms:
            for name, field in f.fields.items():
                value = f.initial.get(name, field.initial)
                if hasattr(field, "prepare_value") and name in ("payload", "values"):
                    value = field.prepare_value(value)
                if isinstance(value, bool):
                    value = "on" if value else ""
                data[f.add_prefix(name)] = "" if value is None else getattr(value, "pk", value)
    return data


@pytest.mark.parametrize("status", ["running", "completed"])
def test_admin_cannot_delete_or_edit_variants_of_a_started_experiment(superuser_client, completed, make_experiment, status):
    exp = completed if status == "completed" else services.start_experiment(make_experiment(key="live"))
    data = change_form_data(superuser_client, exp)
    green = exp.variants.get(key="green")
    data.update({"variants-TOTAL_FORMS": "2", "variants-INITIAL_FORMS": "2",
                 "variants-0-id": exp.variants.get(key="control").pk, "variants-1-id": green.pk,
                 "variants-1-DELETE": "on", "variants-1-weight": "90"})
    r = superuser_client.post(f"/admin/experiments/experiment/{exp.pk}/change/", data)
    assert r.status_code in (200, 302)
    green.refresh_from_db()
    assert green.weight == 50
    exp.refresh_from_db()
    assert exp.status == status and (status != "completed" or exp.shipped_variant_id == green.pk)


def test_exposures_cannot_be_deleted_in_the_admin(superuser_client, completed):
    pks = list(Exposure.objects.values_list("pk", flat=True))
    superuser_client.post("/admin/assignment/exposure/", {"action": "delete_selected", "_selected_action": pks,
                                                          "post": "yes", "index": "0"})
    r = superuser_client.post(f"/admin/assignment/exposure/{pks[0]}/delete/", {"post": "yes"})
    assert r.status_code == 403
    assert Exposure.objects.count() == len(pks)
