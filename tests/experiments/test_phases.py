"""The frozen analysis plan and phases: services, API, admin, assignment, concurrency."""
from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection

from assignment import exposures, runtime
from assignment.hashing import experiment_bucket
from assignment.models import Exposure
from experiments import phases, services
from experiments.models import Experiment, Phase

from .conftest import experiment_data


@pytest.fixture(autouse=True)
def _fresh_assignment_state(settings):
    settings.REDIS_URL = None  # exposures go to the in-process buffer, flushed explicitly

    def clear():
        runtime.reset()
        exposures.local_buffer.take()
        exposures.outbox.take()

    clear()
    yield
    clear()


@pytest.fixture
def running(make_experiment):
    return services.start_experiment(make_experiment(planned_sample_size=4000), actor="pm")


#: One change per frozen field, each different from the running experiment's plan.
FROZEN_CHANGES = {
    "targeting": [{"attribute": "country", "operator": "in", "values": ["CN", "US", "GB"]}],
    "variants": [{"key": "control", "weight": 60, "is_control": True}, {"key": "green", "weight": 40}],
    "metrics": [{"metric": "purchase", "role": "secondary"}, {"metric": "revenue", "role": "primary"}],
    "significance_level": 0.1,
    "correction": "bh",
    "sequential_testing": True,
    "cuped": False,
    "planned_sample_size": 8000,
    "planned_duration_days": 21,
    "segment_attributes": ["browser"],
}


# --- frozen plan --------------------------------------------------------------------------------

def test_start_freezes_the_plan_in_phase_one(running):
    [phase] = running.phases.all()
    assert (phase.number, phase.ended_at, phase.salt, phase.rerandomized) == (1, None, "checkout-button", False)
    assert phase.plan["significance_level"] == 0.05 and phase.plan["planned_sample_size"] == 4000
    assert phase.plan["metrics"] == [{"metric": "purchase", "role": "primary"}]
    assert phase.plan["targeting"] == [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}]
    assert [v["weight"] for v in phase.plan["variants"]] == ["50", "50"]
    # The segments looked at are frozen too: the defaults plus the targeting attribute.
    assert running.segment_attributes == phase.plan["segment_attributes"] == ["country", "platform", "plan"]
    assert running.current_phase == 1


@pytest.mark.parametrize("field", sorted(FROZEN_CHANGES))
def test_api_refuses_each_frozen_field_with_a_400_naming_it(admin_api, running, field):
    r = admin_api.patch("/api/v1/experiments/checkout-button", {field: FROZEN_CHANGES[field]}, format="json")
    assert r.status_code == 400, r.content
    body = r.json()
    assert field in body, body
    if field != "variants":  # the variant lock has its own message (shared with the definitions rules)
        assert "start a new phase" in body[field][0]
        assert "/api/v1/experiments/checkout-button/phases" in body[field][0]
    running.refresh_from_db()
    assert running.phases.count() == 1


@pytest.mark.parametrize("field", sorted(set(FROZEN_CHANGES) - {"variants"}))
def test_services_refuse_frozen_fields_after_completion_too(running, field):
    done = services.complete_experiment(running)
    with pytest.raises(ValidationError) as excinfo:
        services.update_experiment(done, {field: FROZEN_CHANGES[field]})
    assert field in excinfo.value.message_dict


def test_resending_the_same_plan_and_editing_texts_or_growing_traffic_are_allowed(admin_api, running):
    body = admin_api.get("/api/v1/experiments/checkout-button").json()
    same = {f: body[f] for f in ("targeting", "metrics", "significance_level", "correction", "cuped",
                                 "planned_sample_size", "segment_attributes")}
    r = admin_api.patch("/api/v1/experiments/checkout-button",
                        {**same, "hypothesis": "Clearer", "traffic_allocation": 100}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["hypothesis"] == "Clearer"


def test_resending_the_plan_of_a_completed_experiment_keeps_its_rows_and_exposures(admin_api, running):
    green = running.variants.get(key="green")
    Exposure.objects.create(experiment=running, variant=green, unit_id="u1",
                            first_seen=running.started_at, last_seen=running.started_at)
    services.complete_experiment(running)
    body = admin_api.get("/api/v1/experiments/checkout-button").json()
    r = admin_api.patch("/api/v1/experiments/checkout-button",
                        {f: body[f] for f in ("variants", "metrics", "targeting")}, format="json")
    assert r.status_code == 200, r.content
    assert running.variants.get(key="green").pk == green.pk and Exposure.objects.filter(variant=green).exists()


def test_drafts_can_still_change_their_plan(make_experiment):
    draft = make_experiment()
    services.update_experiment(draft, {k: v for k, v in FROZEN_CHANGES.items() if k != "metrics"})
    draft.refresh_from_db()
    assert draft.significance_level == 0.1 and draft.segment_attributes == ["browser"]


# --- admin --------------------------------------------------------------------------------------

@pytest.fixture
def pm(client, db):
    client.force_login(User.objects.create_superuser("pm", "pm@example.com", "pw-for-tests"))
    return client


def test_admin_shows_the_plan_read_only_while_running(pm, running):
    page = pm.get(f"/admin/experiments/experiment/{running.pk}/change/").content.decode()
    for field in ("significance_level", "correction", "sequential_testing", "cuped", "planned_sample_size",
                  "planned_duration_days", "segment_attributes"):
        assert f'name="{field}"' not in page, field
    for editable in ("variants-0-weight", "experiment_metrics-0-role", "targeting_rules-0-values",
                     "experiment_metrics-__prefix__-role", "targeting_rules-__prefix__-values"):
        assert f'name="{editable}"' not in page, editable  # read-only rows, no empty form to add one
    assert 'id="start-new-phase"' in page and "Start new phase" in page
    # A forged POST of a plan field changes nothing (read-only fields are not bound).
    pm.post(f"/admin/experiments/experiment/{running.pk}/change/", {"name": "n", "significance_level": "0.2"})
    running.refresh_from_db()
    assert running.significance_level == 0.05


def test_admin_plan_stays_read_only_after_completion(pm, running):
    done = services.complete_experiment(running)
    assert done.phases.get().ended_at == done.ended_at  # completing ends the current phase
    page = pm.get(f"/admin/experiments/experiment/{done.pk}/change/").content.decode()
    assert 'name="significance_level"' not in page and 'name="experiment_metrics-0-role"' not in page
    assert 'id="start-new-phase"' not in page


def test_admin_start_new_phase_page(pm, running):
    url = f"/admin/experiments/experiment/{running.pk}/phases/new/"
    page = pm.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Re-randomise units" in text and "carry-over" in text and 'name="weight_green"' in text
    form = page.context["form"]
    data = {k: ("on" if v is True else "" if v in (None, False) else
                json.dumps(v) if isinstance(v, list) else str(v))
            for k, v in {**form.initial, **{n: f.initial for n, f in form.fields.items() if f.initial is not None}}.items()}
    data = {k: v for k, v in data.items() if v != ""}
    # Nothing changed and no re-randomisation: refused with a readable message.
    r = pm.post(url, {**data, "reason": "r"})
    assert r.status_code == 200 and "Nothing in the plan would change" in r.content.decode()
    r = pm.post(url, {**data, "weight_control": "70", "weight_green": "30", "significance_level": "0.01",
                      "rerandomize": "on", "reason": "Ship-safe split"})
    assert r.status_code == 302, r.context["form"].errors if r.context else r
    running.refresh_from_db()
    assert running.current_phase == 2 and running.salt == "checkout-button.phase2"
    assert running.significance_level == 0.01
    assert [v.weight for v in running.variants.all()] == [Decimal("70"), Decimal("30")]
    phase = running.phases.get(number=2)
    assert phase.rerandomized and phase.reason == "Ship-safe split" and phase.created_by == "pm"
    # A stale form (expected phase 1) is refused rather than starting phase 3 by accident.
    r = pm.post(url, {**data, "significance_level": "0.02", "reason": "again"}, follow=True)
    assert "was started meanwhile" in r.content.decode()
    assert running.phases.count() == 2


# --- the service ----------------------------------------------------------------------------------

def test_new_phase_ends_the_old_one_and_applies_the_changes(running):
    green_id = running.variants.get(key="green").pk
    phase = phases.start_new_phase(
        running, {"variants": [{"key": "control", "weight": 40, "is_control": True}, {"key": "green", "weight": 30},
                               {"key": "blue", "weight": 30}],
                  "significance_level": 0.01, "metrics": [{"metric": "purchase", "role": "primary"},
                                                          {"metric": "latency", "role": "guardrail"}]},
        rerandomize=False, reason="third arm", actor="pm",
    )
    running.refresh_from_db()
    old = running.phases.get(number=1)
    assert old.ended_at == phase.started_at and phase.ended_at is None
    assert phase.number == running.current_phase == 2 and phase.salt == running.salt == "checkout-button"
    assert running.variants.get(key="green").pk == green_id  # updated in place: exposures keep their variant
    assert [v["key"] for v in phase.plan["variants"]] == ["control", "green", "blue"]
    assert phase.plan["significance_level"] == 0.01 and old.plan["significance_level"] == 0.05
    assert running.history.filter(history_change_reason__startswith="phase 2").exists()


def test_new_phase_refusals(running, make_experiment):
    Exposure.objects.create(experiment=running, variant=running.variants.get(key="green"), unit_id="u1",
                            first_seen=running.started_at, last_seen=running.started_at)
    cases = [
        ({"variants": [{"key": "control", "weight": 100, "is_control": True}, {"key": "new", "weight": 0.01}]}, "variants"),
        ({"variants": [{"key": "control", "weight": 50}, {"key": "green", "weight": 50, "is_control": True}]}, "variants"),
        ({"key": "renamed"}, "key"),
        ({"significance_level": 0.9}, "significance_level"),
        ({}, "changes"),
    ]
    for changes, field in cases:
        with pytest.raises(ValidationError) as excinfo:
            phases.start_new_phase(running, changes, rerandomize=False, reason="r")
        assert field in excinfo.value.message_dict, (changes, excinfo.value)
    with pytest.raises(ValidationError) as excinfo:
        phases.start_new_phase(running, {"variants": [{"key": "control", "weight": 100, "is_control": True},
                                                      {"key": "blue", "weight": 0}]}, rerandomize=False, reason="r")
    assert "variants" in excinfo.value.message_dict
    removal = {"variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "blue", "weight": 50}]}
    with pytest.raises(ValidationError) as excinfo:
        phases.start_new_phase(running, removal, rerandomize=False, reason="drop green")
    assert "'green' has exposures and cannot be removed" in excinfo.value.message_dict["variants"][0]
    with pytest.raises(ValidationError) as excinfo:
        phases.start_new_phase(running, {"cuped": False}, rerandomize=False, reason="  ")
    assert "reason" in excinfo.value.message_dict
    for other in (make_experiment(key="draft"), services.complete_experiment(
            services.start_experiment(make_experiment(key="done")))):
        with pytest.raises(ValidationError) as excinfo:
            phases.start_new_phase(other, {"cuped": False}, rerandomize=False, reason="r")
        assert "status" in excinfo.value.message_dict
    assert running.phases.count() == 1 and Experiment.objects.get(pk=running.pk).current_phase == 1


def test_removing_a_variant_nobody_saw_is_allowed(running):
    three = {"variants": [{"key": "control", "weight": 34, "is_control": True}, {"key": "green", "weight": 33},
                          {"key": "blue", "weight": 33}]}
    phases.start_new_phase(running, three, rerandomize=False, reason="add blue")
    back = {"variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "green", "weight": 50}]}
    phases.start_new_phase(running, back, rerandomize=False, reason="blue was a mistake")
    assert list(running.variants.values_list("key", flat=True)) == ["control", "green"]


# --- API ----------------------------------------------------------------------------------------------

def test_phases_api(admin_api, api_client_for, running):
    url = "/api/v1/experiments/checkout-button/phases"
    r = admin_api.post(url, {"changes": {"targeting": FROZEN_CHANGES["targeting"], "correction": "bh"},
                             "rerandomize": True, "reason": "GB launch", "expected_phase": 1}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["number"], body["salt"], body["rerandomized"], body["reason"]) == (2, "checkout-button.phase2", True, "GB launch")
    assert body["plan"]["targeting"][0]["values"] == ["CN", "US", "GB"] and body["plan"]["correction"] == "bh"
    listed = api_client_for("analyst").get(url).json()
    assert [p["number"] for p in listed] == [1, 2] and listed[0]["ended_at"] == listed[1]["started_at"]
    assert admin_api.get("/api/v1/experiments/checkout-button").json()["current_phase"] == 2
    # Stale expectation: 409; unknown plan field: 400 naming it; analysts cannot start phases.
    r = admin_api.post(url, {"changes": {"cuped": False}, "reason": "x", "expected_phase": 1}, format="json")
    assert r.status_code == 409 and "expected_phase" in r.json()
    r = admin_api.post(url, {"changes": {"salt": "mine"}, "reason": "x"}, format="json")
    assert r.status_code == 400 and "salt" in r.json()["changes"]
    r = admin_api.post(url, {"changes": {"significance_level": 2}, "reason": "x"}, format="json")
    assert r.status_code == 400 and "significance_level" in r.json()["changes"]
    r = admin_api.post(url, {"changes": {"cuped": False}}, format="json")
    assert r.status_code == 400 and "reason" in r.json()
    assert api_client_for("analyst").post(url, {"changes": {"cuped": False}, "reason": "x"}, format="json").status_code == 403
    assert admin_api.post("/api/v1/experiments/nope/phases", {"reason": "x"}, format="json").status_code == 404


# --- assignment ---------------------------------------------------------------------------------

UNITS = [f"u-{i}" for i in range(40)]


def _assign(client, unit: str, country: str = "US") -> dict:
    r = client.post("/api/v1/assignments", data=json.dumps({"unit_id": unit, "attributes": {"country": country}}),
                    content_type="application/json")
    assert r.status_code == 200, r.content
    return {a["experiment"]: a for a in r.json()["assignments"]}["checkout-button"]


def test_rerandomising_changes_assignment_as_the_new_salt_says(api_client_for, running):
    client = api_client_for("client")
    before = {u: _assign(client, u)["variant"] for u in UNITS}
    phases.start_new_phase(running, {"cuped": False}, rerandomize=False, reason="no re-randomisation")
    runtime.reset()
    assert {u: _assign(client, u)["variant"] for u in UNITS} == before  # same salt: same answers
    phases.start_new_phase(running, {"cuped": True}, rerandomize=True, reason="reshuffle")
    runtime.reset()
    after = {u: _assign(client, u)["variant"] for u in UNITS}
    expected = {u: "control" if experiment_bucket("checkout-button.phase3", u) < 5000 else "green" for u in UNITS}
    assert after == expected and after != before
    # The test vectors (assignment/vectors.json, experiment "reshuffled", phase 2, salt
    # "reshuffled.phase2") pin answers that differ from the phase-1 salt for some units.
    from pathlib import Path

    from assignment import vectors

    cases = [c for c in json.loads(Path(vectors.PATH).read_text(encoding="utf-8"))["cases"]
             if c["experiment"] == "reshuffled" and c["reason"] == "assigned"]
    moved = [c["unit_id"] for c in cases
             if ("control" if experiment_bucket("reshuffled", c["unit_id"]) < 5000 else "treatment") != c["variant"]]
    assert len(cases) > 20 and 0 < len(moved) < len(cases)
    exposures.flush()
    by_phase = {p: set(Exposure.objects.filter(phase=p).values_list("unit_id", flat=True)) for p in (1, 2, 3)}
    assert by_phase[1] == by_phase[2] == by_phase[3] == set(UNITS)  # one row per unit and phase
    phase3 = dict(Exposure.objects.filter(phase=3).values_list("unit_id", "variant__key"))
    assert phase3 == after


def test_a_unit_that_stops_matching_is_served_the_fallback_and_records_nothing_new(api_client_for, running):
    """Documented rule (docs/assignment.md): targeting is evaluated on every request."""
    client = api_client_for("client")
    first = _assign(client, "u-7", "US")
    assert first["in_experiment"] and first["reason"] == "assigned"
    exposures.flush()
    row = Exposure.objects.get(unit_id="u-7")
    moved = _assign(client, "u-7", "DE")
    assert (moved["variant"], moved["in_experiment"], moved["reason"]) == ("control", False, "targeting")
    exposures.flush()
    again = Exposure.objects.get(unit_id="u-7")  # still one row, same variant and times
    assert (again.variant_id, again.first_seen, again.last_seen) == (row.variant_id, row.first_seen, row.last_seen)
    assert again.attributes == {"country": "US"}


# --- concurrency (PostgreSQL) ------------------------------------------------------------------------

def _twins(target, n: int = 2) -> list:
    barrier = threading.Barrier(n)
    results: list = []

    def run():
        try:
            barrier.wait()
            results.append(target())
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("expected_phase", [1, None])
def test_concurrent_new_phases_one_wins(metrics, expected_phase):
    experiment = services.start_experiment(services.create_experiment(experiment_data()))
    # With expected_phase the loser gets a conflict (409); without it, the loser finds the change
    # already made (400 "nothing would change"). The row lock (SELECT ... FOR UPDATE) serialises them.
    results = _twins(lambda: phases.start_new_phase(
        Experiment.objects.get(pk=experiment.pk), {"significance_level": 0.01},
        rerandomize=expected_phase is not None, reason="twin", expected_phase=expected_phase))
    won = [r for r in results if isinstance(r, Phase)]
    lost = [r for r in results if isinstance(r, ValidationError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], phases.PhaseConflict) == (expected_phase is not None)
    assert [(p.number, p.ended_at is None) for p in Phase.objects.filter(experiment=experiment)] == [
        (1, False), (2, True)]
    assert Experiment.objects.get(pk=experiment.pk).current_phase == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_api_twins_get_201_and_409(metrics, api_key):
    from rest_framework.test import APIClient

    services.start_experiment(services.create_experiment(experiment_data()))
    key = api_key("admin")

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client.post("/api/v1/experiments/checkout-button/phases",
                           {"changes": {"cuped": False}, "reason": "twin", "expected_phase": 1}, format="json").status_code

    assert sorted(_twins(post)) == [201, 409]


def test_segment_attributes_are_validated(admin_api, metrics):
    data = {**experiment_data(), "metrics": [{"metric": "purchase", "role": "primary"}]}
    for bad in (["1x"], ["a"] * 2, "country", [f"a{i}" for i in range(21)]):
        r = admin_api.post("/api/v1/experiments", {**data, "segment_attributes": bad}, format="json")
        assert r.status_code == 400 and "segment_attributes" in r.json(), (bad, r.content)
    r = admin_api.post("/api/v1/experiments", {**data, "segment_attributes": ["browser"]}, format="json")
    assert r.status_code == 201 and r.json()["segment_attributes"] == ["browser"]
    started = services.start_experiment(Experiment.objects.get(key="checkout-button"))
    assert started.segment_attributes == ["browser"]  # an explicit list is kept as the frozen one


def test_backfill_migration_gives_started_experiments_their_phase_one(running, make_experiment):
    import importlib

    from django.apps import apps

    backfill = importlib.import_module("experiments.migrations.0007_backfill_first_phases").backfill
    Phase.objects.all().delete()
    draft = make_experiment(key="still-draft")
    backfill(apps, None)
    phase = Phase.objects.get()
    assert (phase.experiment_id, phase.number, phase.started_at, phase.salt) == (
        running.pk, 1, running.started_at, "checkout-button")
    assert phase.plan == {**phases.plan.freeze_plan(running), "segment_attributes": running.segment_attributes}
    assert not draft.phases.exists()


def test_the_audit_trail_shows_each_phase_with_its_salt_choice_and_reason(admin_api, running):
    phases.start_new_phase(
        running, {"significance_level": 0.01}, rerandomize=True, reason="stricter alpha", actor="alice"
    )
    body = admin_api.get(f"/api/v1/experiments/{running.key}/history").json()
    rows = [(e["object"], e["action"]) for e in body if e["object_type"] == "phase"]
    assert ("phase 1", "started") in rows and ("phase 1", "ended") in rows and ("phase 2", "started") in rows
    second = next(e for e in body if e["object"] == "phase 2")
    assert second["reason"] == "stricter alpha"
    assert {"field": "re-randomised", "old": "none", "new": "yes"} in second["changes"]
    assert {"field": "salt", "old": "none", "new": f"{running.key}.phase2"} in second["changes"]
