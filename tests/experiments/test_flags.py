"""Feature flag definitions: value types, rules, salts, environments, history, the API."""
from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from assignment import runtime
from assignment.document import build_document
from experiments import flag_audit, flags
from experiments.models import Flag, FlagRule

pytestmark = pytest.mark.django_db


def make_flag(key="new-checkout", value_type="boolean", default=False, **extra):
    return flags.create_flag({"key": key, "name": key, "value_type": value_type, "default_value": default, **extra},
                             actor="tester")


def rules_of(flag, env="production"):
    return flags.flag_as_dict(flags.flags_queryset().get(pk=flag.pk))["environments"][env]["rules"]


# --- values ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value_type", "good", "bad"), [
    ("boolean", [True, False], [0, "true", None, [True]]),
    ("string", ["", "blue", "é" * 4096], [1, None, "x" * 4097, "a\x00b", True]),
    ("number", [0, -3, 2.5, 1e308, 2**53], [float("inf"), float("nan"), True, "1", None, 2**53 + 1, 10**400]),
    ("json", [None, {"a": [1, 2]}, [1, "x"], "s", 3], [float("inf"), {"a": float("nan")}, {"x": "y" * 20_000}]),
])
def test_value_types(value_type, good, bad):
    for value in good:
        assert flags.value_problem(value_type, value) is None, value
    for value in bad:
        assert flags.value_problem(value_type, value) is not None, value


def test_deeply_nested_json_is_refused_without_recursion_error():
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert "deeper" in flags.value_problem("json", deep)


@pytest.mark.parametrize(("percent", "expected"), [
    (0, "0.00"), (10, "10.00"), ("12.5", "12.50"), (33.33, "33.33"), (100, "100.00"),
    (-1, None), (100.01, None), (12.345, None), (True, None), ("ten", None), (float("inf"), None), (None, None),
    ("1e2", "100.00"), ("NaN", None),
])
def test_percent_parsing(percent, expected):
    parsed = flags.parse_percent(percent)
    assert (str(parsed) if parsed is not None else None) == expected


def test_default_must_have_the_flag_type():
    with pytest.raises(ValidationError) as e:
        make_flag(value_type="number", default="1")
    assert "default" in e.value.message_dict
    assert make_flag(key="b").default_value is False
    assert flags.create_flag({"key": "n", "name": "n", "value_type": "number"}).default_value == 0


def test_key_is_unique_and_fixed_and_evaluate_is_free(db):
    flag = make_flag()
    with pytest.raises(ValidationError) as e:
        make_flag()
    assert "key" in e.value.message_dict
    with pytest.raises(ValidationError) as e:
        flags.update_flag(flag, {"key": "other"})
    assert "key" in e.value.message_dict
    with pytest.raises(ValidationError) as e:
        make_flag(key="evaluate")
    assert "reserved" in e.value.message_dict["key"][0]


# --- rules -------------------------------------------------------------------------------------

def test_rollout_salt_defaults_to_the_key_is_fixed_and_ramping_keeps_the_rule():
    flag = make_flag()
    flags.set_environment(flag, "production", rules=[{"type": "rollout", "value": True, "percent": 10}])
    [rule] = rules_of(flag)
    assert (rule["type"], rule["percent"], rule["salt"], rule["audiences"]) == ("rollout", 10.0, "new-checkout", [])
    flags.set_environment(flag, "production", rules=[{**rule, "percent": 50}])
    [ramped] = rules_of(flag)
    assert (ramped["id"], ramped["salt"], ramped["percent"]) == (rule["id"], "new-checkout", 50.0)
    with pytest.raises(ValidationError) as e:
        flags.set_environment(flag, "production", rules=[{**ramped, "salt": "other"}])
    assert "salt" in e.value.message_dict["rules"][0] and "fixed" in e.value.message_dict["rules"][0]
    # A new rule may choose its own salt.
    flags.set_environment(flag, "production", rules=[ramped, {"type": "rollout", "value": False, "percent": 5,
                                                               "salt": "fresh"}])
    assert [r["salt"] for r in rules_of(flag)] == ["new-checkout", "fresh"]


@pytest.mark.parametrize(("rule", "words"), [
    ({"type": "rollout", "value": True, "percent": 120}, "percent"),
    ({"type": "rollout", "value": True, "percent": 10.005}, "two decimals"),
    ({"type": "rollout", "value": True}, "percent"),
    ({"type": "rollout", "value": "yes", "percent": 10}, "true or false"),
    ({"type": "force", "audiences": ["nope"], "value": True}, "No audience"),
    ({"type": "force"}, "value is required"),
    ({"type": "force", "value": True, "percent": 5}, "not a member"),
    ({"type": "units", "units": {}}, "non-empty"),
    ({"type": "units", "units": {"u-1": "x"}}, "true or false"),
    ({"type": "units", "units": ["u-1"]}, "needs a value"),
    ({"type": "units", "units": {"u-1": True}, "hashed_units": {"ab": True}}, "hashed_units"),
    ({"type": "experiment", "experiment": "missing"}, "no experiment"),
    ({"type": "nope"}, "type must be one of"),
    ({"type": "force", "value": True, "id": "r999999"}, "not a rule of this flag"),
    ("not an object", "must be an object"),
])
def test_bad_rules_are_refused_naming_the_rule(rule, words):
    flag = make_flag()
    with pytest.raises(ValidationError) as e:
        flags.set_environment(flag, "production", rules=[{"type": "force", "value": True}, rule])
    [message] = e.value.message_dict["rules"]
    assert message.startswith("Rule 2") and words in message, message
    assert FlagRule.objects.count() == 0  # nothing half-written


def test_units_rule_as_a_map_or_a_list_with_a_value():
    flag = make_flag()
    flags.set_environment(flag, "production", rules=[
        {"type": "units", "units": ["qa-1", "qa-2"], "value": True},
        {"type": "units", "units": {"qa-3": False}},
    ])
    first, second = rules_of(flag)
    assert first["units"] == {"qa-1": True, "qa-2": True} and first["hashed_units"] == {}
    assert second["units"] == {"qa-3": False}


def test_experiment_rule_values_default_from_payloads_and_must_name_variants(make_experiment):
    experiment = make_experiment(variants=[
        {"key": "control", "weight": 50, "is_control": True, "payload": {"new-checkout": False}},
        {"key": "green", "weight": 50, "payload": {"new-checkout": True, "color": "green"}},
    ])
    flag = make_flag()
    flags.set_environment(flag, "production", rules=[{"type": "experiment", "experiment": experiment.key}])
    [rule] = rules_of(flag)
    assert rule == {"id": rule["id"], "type": "experiment", "experiment": experiment.key,
                    "values": {"control": False, "green": True}}
    with pytest.raises(ValidationError) as e:
        flags.set_environment(flag, "production", rules=[
            {"type": "experiment", "experiment": experiment.key, "values": {"blue": True}}])
    assert "not a variant" in e.value.message_dict["rules"][0]
    string_flag = make_flag(key="colour", value_type="string", default="blue")
    with pytest.raises(ValidationError) as e:  # no payload has a "colour" member
        flags.set_environment(string_flag, "production", rules=[{"type": "experiment", "experiment": experiment.key}])
    assert "at least one variant" in e.value.message_dict["rules"][0]


def test_rules_are_per_environment_and_ids_stay_stable():
    flag = make_flag()
    flags.set_environment(flag, "production", rules=[{"type": "force", "value": True}])
    flags.set_environment(flag, "staging", enabled=False, rules=[{"type": "rollout", "value": True, "percent": 50}])
    [prod] = rules_of(flag)
    flags.set_environment(flag, "production", rules=[{"type": "rollout", "value": True, "percent": 1}, prod])
    new, kept = rules_of(flag)
    assert kept["id"] == prod["id"] and new["id"] != prod["id"]
    view = flags.flag_as_dict(flags.flags_queryset().get(pk=flag.pk))["environments"]
    assert view["staging"]["enabled"] is False and view["production"]["enabled"] is True
    assert view["development"] == {"enabled": True, "rules": []}
    with pytest.raises(ValidationError) as e:  # a rule of another environment is not this one's
        flags.set_environment(flag, "staging", rules=[prod])
    assert "not a rule of this flag" in e.value.message_dict["rules"][0]
    with pytest.raises(ValidationError) as e:
        flags.set_environment(flag, "moon", rules=[])
    assert "environment" in e.value.message_dict


def test_type_change_must_keep_every_value_typed():
    flag = make_flag()
    flags.set_environment(flag, "production", rules=[{"type": "force", "value": True}])
    with pytest.raises(ValidationError) as e:
        flags.update_flag(flag, {"value_type": "string", "default_value": "off"})
    assert "type" in e.value.message_dict
    flags.set_environment(flag, "production", rules=[])
    assert flags.update_flag(flag, {"value_type": "string", "default_value": "off"}).value_type == "string"


def test_every_change_is_in_the_history():
    flag = make_flag()
    flags.set_environment(flag, "production", rules=[{"type": "rollout", "value": True, "percent": 10}],
                          actor="alice")
    [rule] = rules_of(flag)
    flags.set_environment(flag, "production", enabled=False, rules=[{**rule, "percent": 50}], actor="bob")
    entries = flag_audit.flag_history(flag)
    kinds = {(e["object_type"], e["action"]) for e in entries}
    assert {("flag", "created"), ("rule", "created"), ("rule", "changed"), ("environment", "created")} <= kinds
    ramp = next(e for e in entries if e["object_type"] == "rule" and e["action"] == "changed")
    assert {"field": "percent", "old": "10", "new": "50"} in ramp["changes"] and ramp["who"] == "bob"
    assert "production" in ramp["object"]


# --- document and cache -----------------------------------------------------------------------

def test_document_holds_the_flags_of_its_environment(make_experiment):
    flag = make_flag()
    flags.set_environment(flag, "production", rules=[{"type": "rollout", "value": True, "percent": 10}])
    flags.set_environment(flag, "staging", enabled=False)
    make_flag(key="a-first", value_type="json", default={"x": 1})
    prod, _ = build_document()
    staging, _ = build_document("staging")
    assert prod["environment"] == "production" and staging["environment"] == "staging"
    assert [f["key"] for f in prod["flags"]] == ["a-first", "new-checkout"]
    entry = prod["flags"][1]
    assert entry == {"key": "new-checkout", "type": "boolean", "default": False, "enabled": True, "unit_salt": "",
                     "rules": [{"id": entry["rules"][0]["id"], "type": "rollout", "audiences": [], "value": True,
                                "percent": 10.0, "salt": "new-checkout"}]}
    assert staging["flags"][1]["enabled"] is False and staging["flags"][1]["rules"] == []
    assert prod["version"] != staging["version"]


def test_flag_changes_move_the_config_version():
    runtime.reset()
    before = runtime.current().version
    flag = make_flag()
    assert runtime.current().version != before
    middle = runtime.current().version
    flags.set_environment(flag, "production", rules=[{"type": "force", "value": True}])
    assert runtime.current().version != middle


# --- API ---------------------------------------------------------------------------------------

def post(client, path, body, method="post"):
    return getattr(client, method)(path, data=json.dumps(body), content_type="application/json")


def test_api_create_roll_out_and_ramp(admin_api):
    r = post(admin_api, "/api/v1/flags", {"key": "new-checkout", "name": "New checkout", "type": "boolean",
                                          "default": False})
    assert r.status_code == 201, r.content
    assert r.json()["environments"]["production"] == {"enabled": True, "rules": []}
    r = post(admin_api, "/api/v1/flags/new-checkout/environments/production",
             {"rules": [{"type": "rollout", "value": True, "percent": 10}]}, "put")
    assert r.status_code == 200, r.content
    rule = r.json()["environments"]["production"]["rules"][0]
    r = post(admin_api, "/api/v1/flags/new-checkout/environments/production",
             {"rules": [{**rule, "percent": 50}]}, "put")
    assert r.json()["environments"]["production"]["rules"] == [{**rule, "percent": 50.0}]
    history = admin_api.get("/api/v1/flags/new-checkout/history").json()
    assert any(c["field"] == "percent" for e in history for c in e["changes"])
    assert admin_api.get("/api/v1/flags").json()[0]["key"] == "new-checkout"
    r = post(admin_api, "/api/v1/flags/new-checkout", {"description": "ramping", "default": True}, "patch")
    assert (r.status_code, r.json()["description"], r.json()["default"]) == (200, "ramping", True)
    assert admin_api.delete("/api/v1/flags/new-checkout").status_code == 204
    assert admin_api.get("/api/v1/flags/new-checkout").status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"key": "Bad Key", "name": "x"}, "key"),
    ({"key": "evaluate", "name": "x"}, "key"),
    ({"key": "f", "name": "x", "type": "colour"}, "type"),
    ({"key": "f", "name": "x", "type": "number", "default": "1"}, "default"),
    ({"key": "f", "name": "x", "type": "string", "default": "a\u0000b"}, "default"),
    ({"key": "f", "name": "x", "environments": {"moon": {"enabled": True}}}, "environment"),
    ({"key": "f", "name": "x", "environments": {"production": {"rules": [{"type": "rollout", "value": True,
                                                                          "percent": 101}]}}}, "rules"),
    ({"name": "x"}, "key"),
])
def test_api_bad_input_is_a_400_naming_the_field(admin_api, body, field):
    r = post(admin_api, "/api/v1/flags", body)
    assert r.status_code == 400, r.content
    assert any(field in k for k in _keys(r.json())), r.json()
    assert not Flag.objects.exists()


def _keys(body, prefix=""):
    for k, v in body.items():
        yield prefix + k
        if isinstance(v, dict):
            yield from _keys(v, prefix + k + ".")


def test_api_numbers_beyond_a_double_and_deep_nesting_are_400(admin_api):
    post(admin_api, "/api/v1/flags", {"key": "j", "name": "j", "type": "json", "default": None})
    r = admin_api.put("/api/v1/flags/j/environments/production",
                      data='{"rules": [{"type": "force", "value": 1e400}]}', content_type="application/json")
    assert r.status_code == 400
    r = admin_api.put("/api/v1/flags/j/environments/production",
                      data='{"rules": [{"type": "force", "value": ' + "[" * 40 + "]" * 40 + "}]}",
                      content_type="application/json")
    assert r.status_code == 400
    r = post(admin_api, "/api/v1/flags/j/environments/production", {"rulez": []}, "put")
    assert r.status_code == 400 and "rulez" in r.json()


def test_api_access_analysts_read_clients_nothing(api_client_for):
    make_flag()
    analyst, client = api_client_for("analyst"), api_client_for("client")
    assert analyst.get("/api/v1/flags/new-checkout").status_code == 200
    assert post(analyst, "/api/v1/flags", {"key": "x", "name": "x"}).status_code == 403
    assert post(analyst, "/api/v1/flags/new-checkout/environments/production", {"enabled": False}, "put").status_code == 403
    assert client.get("/api/v1/flags").status_code == 403


def test_api_experiment_rule_round_trip(admin_api, make_experiment):
    make_experiment(variants=[
        {"key": "control", "weight": 50, "is_control": True, "payload": {"new-checkout": False}},
        {"key": "green", "weight": 50, "payload": {"new-checkout": True}},
    ])
    post(admin_api, "/api/v1/flags", {"key": "new-checkout", "name": "n"})
    r = post(admin_api, "/api/v1/flags/new-checkout/environments/staging",
             {"rules": [{"type": "experiment", "experiment": "checkout-button"}]}, "put")
    assert r.status_code == 200, r.content
    rules = r.json()["environments"]["staging"]["rules"]
    again = post(admin_api, "/api/v1/flags/new-checkout/environments/staging", {"rules": rules}, "put")
    assert again.json()["environments"]["staging"]["rules"] == rules  # GET shape is a valid PUT body


def test_demo_seeds_the_new_checkout_flag_at_10_percent(metrics):
    from experiments.demo import ensure_demo_definitions

    ensure_demo_definitions()
    ensure_demo_definitions()  # idempotent
    flag = Flag.objects.get(key="new-checkout")
    assert (flag.value_type, flag.default_value) == ("boolean", False)
    [rule] = rules_of(flag)
    assert (rule["type"], rule["value"], rule["percent"], rule["salt"]) == ("rollout", True, 10.0, "new-checkout")


def test_erasing_a_unit_removes_it_from_units_rules_and_their_history(admin_api):
    flag = make_flag()
    flags.set_environment(flag, "production", rules=[
        {"type": "units", "units": {"victim": True, "other": True}}, {"type": "units", "units": {"victim": False}}])
    assert admin_api.delete("/api/v1/units/victim").status_code == 200
    [rule] = rules_of(flag)
    assert rule["units"] == {"other": True}
    assert not FlagRule.history.filter(units__has_key="victim").exists()
    assert "victim" not in json.dumps(flag_audit.flag_history(flag), default=str)
