"""The flag and audience admin through the test client: typed forms, rules per environment,
audience usage, refusals shown as messages (never a 500), PM may edit, analysts read."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from access.models import Environment
from access.roles import ANALYST, PM, sync_roles
from experiments import audiences, flags, services
from experiments.models import Audience, Flag

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm(client):
    sync_roles()
    user = User.objects.create_user("pat", password="pw-for-tests", is_staff=True)
    user.groups.add(Group.objects.get(name=PM))
    client.force_login(user)
    return client


def management(prefix: str, total: int, initial: int = 0) -> dict:
    return {f"{prefix}-TOTAL_FORMS": str(total), f"{prefix}-INITIAL_FORMS": str(initial),
            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"}


def rule_prefixes() -> list[str]:
    """Each environment's rule inline (Django numbers repeated prefixes: rules, rules-2, ...)."""
    keys = list(Environment.objects.order_by("key").values_list("key", flat=True))
    return [("rules" if i == 0 else f"rules-{i + 1}") for i in range(len(keys))]


def flag_form(key="new-checkout", default="false", value_type="boolean", rules=None) -> dict:
    envs = list(Environment.objects.order_by("key").values_list("key", flat=True))
    data = {"key": key, "name": "New checkout", "description": "", "value_type": value_type,
            "default_text": default, **management("environment_states", 0)}
    for env, prefix in zip(envs, rule_prefixes(), strict=True):
        rows = (rules or {}).get(env, [])
        data.update(management(prefix, len(rows)))
        for i, row in enumerate(rows):
            data.update({f"{prefix}-{i}-{k}": v for k, v in row.items()})
    return data


def test_pm_creates_a_flag_with_a_rollout_in_production(pm):
    for env in ("development", "staging", "production"):
        Environment.objects.get_or_create(key=env, defaults={"name": env.title()})
    r = pm.get("/admin/experiments/flag/add/")
    assert r.status_code == 200 and b"Rules in Production" in r.content
    r = pm.post("/admin/experiments/flag/add/", flag_form(rules={"production": [
        {"position": "0", "kind": "rollout", "value_text": "true", "percent": "10"}]}))
    assert r.status_code == 302, r.context["errors"] if r.context else r.content[:500]
    flag = Flag.objects.get(key="new-checkout")
    [rule] = flags.flag_as_dict(flags.flags_queryset().get(pk=flag.pk))["environments"]["production"]["rules"]
    assert (rule["value"], rule["percent"], rule["salt"]) == (True, 10.0, "new-checkout")
    assert flag.history.first().history_user.username == "pat"
    # The change page shows the rule with its typed value; ramping keeps id and salt.
    r = pm.get(f"/admin/experiments/flag/{flag.pk}/change/")
    assert r.status_code == 200 and b'value="true"' in r.content
    rule_row = flag.rules.get()
    envs = list(Environment.objects.order_by("key").values_list("key", flat=True))
    prefix = rule_prefixes()[envs.index("production")]
    data = flag_form(rules={"production": [{"id": rule_row.pk, "flag": flag.pk, "position": "0", "kind": "rollout",
                                             "value_text": "true", "percent": "50", "salt": "ignored"}]})
    data[f"{prefix}-INITIAL_FORMS"] = "1"
    r = pm.post(f"/admin/experiments/flag/{flag.pk}/change/", data)
    assert r.status_code == 302, r.context["errors"] if r.context else r.content[:500]
    rule_row.refresh_from_db()
    assert (float(rule_row.percent), rule_row.salt) == (50.0, "new-checkout")
    assert pm.get(f"/admin/experiments/flag/{flag.pk}/history/").status_code == 200


@pytest.mark.parametrize(("rule", "message"), [
    ({"kind": "rollout", "value_text": "maybe", "percent": "10"}, "Type true or false"),
    ({"kind": "rollout", "value_text": "true", "percent": "150"}, ""),
    ({"kind": "units", "units_text": "qa-1 = nope"}, "Type true or false"),
    ({"kind": "experiment"}, "no experiment"),
    ({"kind": "force", "value_text": "true", "percent": "10"}, "does not apply to a force rule"),
])
def test_bad_rules_are_form_errors(pm, rule, message):
    for env in ("development", "staging", "production"):
        Environment.objects.get_or_create(key=env, defaults={"name": env.title()})
    r = pm.post("/admin/experiments/flag/add/", flag_form(rules={"staging": [{"position": "0", **rule}]}))
    assert r.status_code == 200 and not Flag.objects.exists()
    assert message in str(r.context["errors"]) or message in r.content.decode()


def test_bad_default_is_a_form_error(pm):
    r = pm.post("/admin/experiments/flag/add/", flag_form(value_type="number", default="twelve"))
    assert r.status_code == 200 and "Type a number" in r.content.decode()


def test_audience_admin_conditions_as_lines_and_usage(pm, metrics):
    r = pm.post("/admin/experiments/audience/add/", {
        "key": "eu-mobile", "name": "EU mobile", "description": "", "match": "all",
        "conditions": "country in DE, FR\nplatform equals ios\napp_version semver_gte 2.1.0"})
    assert r.status_code == 302, r.context["errors"] if r.context else r.content[:500]
    audience = Audience.objects.get(key="eu-mobile")
    assert audience.conditions[0] == {"attribute": "country", "operator": "in", "values": ["DE", "FR"]}
    experiment = services.create_experiment({
        "key": "exp", "name": "e", "planned_sample_size": 100, "metrics": [{"metric": "purchase", "role": "primary"}],
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}]})
    audiences.set_experiment_audiences(experiment, ["eu-mobile"])
    flag = flags.create_flag({"key": "f", "name": "f"})
    flags.set_environment(flag, "staging", rules=[{"type": "force", "audiences": ["eu-mobile"], "value": True}])
    page = pm.get(f"/admin/experiments/audience/{audience.pk}/change/").content.decode()
    assert "Experiment exp" in page and "Flag f" in page and "rules in staging" in page
    services.start_experiment(experiment)
    r = pm.post(f"/admin/experiments/audience/{audience.pk}/change/", {
        "name": "EU mobile", "description": "", "match": "any", "conditions": "country in DE, FR"})
    assert r.status_code == 200 and "analysis plan is frozen" in r.content.decode()
    audience.refresh_from_db()
    assert audience.match == "all"
    r = pm.post("/admin/experiments/audience/add/", {"key": "bad", "name": "b", "match": "all",
                                                      "conditions": "age gte old"})
    assert r.status_code == 200 and "compares numbers" in r.content.decode()
    assert pm.get(f"/admin/experiments/audience/{audience.pk}/history/").status_code == 200
    assert pm.get("/admin/experiments/audience/").status_code == 200


def test_experiment_page_shows_audiences_and_switches(pm, metrics):
    experiment = services.create_experiment({
        "key": "exp", "name": "e", "planned_sample_size": 100, "metrics": [{"metric": "purchase", "role": "primary"}],
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}]})
    page = pm.get(f"/admin/experiments/experiment/{experiment.pk}/change/").content.decode()
    assert "Audiences (part of the analysis plan" in page and "On/off per environment" in page


def test_analyst_reads_but_cannot_change(client):
    sync_roles()
    user = User.objects.create_user("ann", password="pw-for-tests", is_staff=True)
    user.groups.add(Group.objects.get(name=ANALYST))
    client.force_login(user)
    flag = flags.create_flag({"key": "f", "name": "f"})
    assert client.get(f"/admin/experiments/flag/{flag.pk}/change/").status_code == 200
    assert client.get("/admin/experiments/flag/add/").status_code == 403
    assert client.get("/admin/access/environment/").status_code == 200


def test_environment_and_key_admin(admin_client):
    assert admin_client.get("/admin/access/environment/").status_code == 200
    r = admin_client.get("/admin/access/apikey/add/")
    assert r.status_code == 200 and b"environment" in r.content
