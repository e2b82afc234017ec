"""``POST /api/v1/flags/evaluate``: the contract, validation naming the field, hostile input,
unknown flags, and exposures recorded only when an experiment rule decides.

Flag definitions live in the database only once the definitions side exists; here the served
document is the one built from the database plus flags and audiences added in Python."""
from __future__ import annotations

import json

import pytest

from assignment import exposures, runtime
from assignment.document import canonical_json
from assignment.evaluator import Evaluator
from assignment.flag_serializers import FlagEvaluateRequestSerializer, parse_flag_request

URL = "/api/v1/flags/evaluate"

AUDIENCES = {
    "eu": {"match": "all", "conditions": [{"attribute": "country", "operator": "in", "values": ["DE", "FR"]}]},
    "unused": {"match": "any", "conditions": []},
}
FLAGS = [
    {"key": "gated", "type": "number", "default": -1, "enabled": True, "unit_salt": "", "rules": [
        {"id": "r1", "type": "force", "audiences": ["eu"], "value": 1},
        {"id": "r2", "type": "experiment", "experiment": "checkout-button",
         "values": {"control": 10, "green": 20}},
    ]},
    {"key": "half", "type": "boolean", "default": False, "enabled": True, "unit_salt": "", "rules": [
        {"id": "r3", "type": "units", "units": {"vip": True}, "hashed_units": {}},
        {"id": "r4", "type": "rollout", "audiences": [], "value": True, "percent": 50, "salt": "half"},
    ]},
    {"key": "layout", "type": "json", "default": {"columns": [1, 2]}, "enabled": True, "unit_salt": "",
     "rules": []},
    {"key": "off", "type": "string", "default": "old", "enabled": False, "unit_salt": "", "rules": [
        {"id": "r5", "type": "force", "audiences": [], "value": "new"},
    ]},
]


@pytest.fixture
def flag_state(client_api, make_experiment, monkeypatch):
    """The database's document (so exposures have ids) with audiences and flags added."""
    from experiments.models import Override

    experiment = make_experiment("checkout-button")
    Override.objects.create(experiment=experiment, unit_id="qa-1", variant=experiment.variants.get(key="green"))
    base = runtime.current()
    document = {**base.document, "audiences": AUDIENCES, "flags": FLAGS, "environment": "staging",
                "version": "flags-test-version"}
    state = runtime.State(Evaluator(document), document, canonical_json(document), '"x"', base.ids)
    monkeypatch.setattr(runtime, "current", lambda *args, **kwargs: state)  # any environment
    return state


def post(client, body):
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def test_every_flag_with_the_deciding_rule(client_api, flag_state):
    body = post(client_api, {"unit_id": "vip", "attributes": {"country": "DE"}}).json()
    assert body["unit_id"] == "vip" and body["environment"] == "staging"
    assert body["config_version"] == "flags-test-version"
    assert body["flags"] == {
        "gated": {"key": "gated", "value": 1, "reason": "force", "rule_id": "r1", "experiment": None, "variant": None},
        "half": {"key": "half", "value": True, "reason": "units", "rule_id": "r3", "experiment": None, "variant": None},
        "layout": {"key": "layout", "value": {"columns": [1, 2]}, "reason": "default", "rule_id": None,
                   "experiment": None, "variant": None},
        "off": {"key": "off", "value": "old", "reason": "disabled", "rule_id": None, "experiment": None,
                "variant": None},
    }
    assert len(exposures.local_buffer) == 0  # the experiment rule did not decide


def test_named_and_unknown_flags(client_api, flag_state):
    response = post(client_api, {"unit_id": "u-1", "flags": ["off", "nope", "off"]})
    assert response.status_code == 200
    flags = response.json()["flags"]
    assert list(flags) == ["off", "nope"]
    assert flags["nope"] == {"key": "nope", "value": None, "reason": "unknown_flag", "rule_id": None,
                             "experiment": None, "variant": None}
    assert post(client_api, {"unit_id": "u-1", "flags": []}).json()["flags"] == {}


def test_rollout_answers_match_the_hash(client_api, flag_state):
    from assignment.flags import flag_bucket

    for i in range(20):
        unit = f"u-{i}"
        answer = post(client_api, {"unit_id": unit, "flags": ["half"]}).json()["flags"]["half"]
        on = flag_bucket("half", unit) < 5000
        assert (answer["value"], answer["reason"]) == ((True, "rollout") if on else (False, "default"))


def test_experiment_rule_records_the_exposure_only_when_it_decides(client_api, flag_state):
    exp_id, variant_ids = flag_state.ids.experiments["checkout-button"]
    answer = post(client_api, {"unit_id": "u-7", "attributes": {"country": "US"}}).json()["flags"]["gated"]
    assert answer["reason"] == "experiment" and answer["experiment"] == "checkout-button"
    assert answer["value"] == {"control": 10, "green": 20}[answer["variant"]]
    [item] = exposures.local_buffer.take()
    assert item[:3] == (exp_id, variant_ids[answer["variant"]], "u-7")
    assert item[4] == {"country": "US"}
    # Decided by the force rule: the experiment would have enrolled u-7, but nothing is recorded.
    post(client_api, {"unit_id": "u-7", "attributes": {"country": "DE"}})
    # Named flags without the experiment rule record nothing either.
    post(client_api, {"unit_id": "u-8", "flags": ["half", "off"]})
    # An override decides the rule (value from its variant) but is never an exposure.
    forced = post(client_api, {"unit_id": "qa-1", "flags": ["gated"]}).json()["flags"]["gated"]
    assert (forced["reason"], forced["variant"], forced["value"]) == ("experiment", "green", 20)
    assert len(exposures.local_buffer) == 0


def test_the_same_answers_as_the_assignment_endpoint(client_api, flag_state):
    for i in range(10):
        unit = f"unit-{i}"
        assignment = client_api.post(
            "/api/v1/assignments", data=json.dumps({"unit_id": unit, "experiments": ["checkout-button"]}),
            content_type="application/json",
        ).json()["assignments"][0]
        flag = post(client_api, {"unit_id": unit, "flags": ["gated"]}).json()["flags"]["gated"]
        assert flag["variant"] == assignment["variant"]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "unit_id"),
    ({"unit_id": ""}, "unit_id"),
    ({"unit_id": 5}, "unit_id"),
    ({"unit_id": None}, "unit_id"),
    ({"unit_id": "x" * 257}, "unit_id"),
    ({"unit_id": "a\x00b"}, "unit_id"),
    ({"unit_id": "u", "attributes": []}, "attributes"),
    ({"unit_id": "u", "attributes": {"a": {"b": 1}}}, "attributes"),
    ({"unit_id": "u", "attributes": {"a": [1]}}, "attributes"),
    ({"unit_id": "u", "attributes": {"a": "x" * 1025}}, "attributes"),
    ({"unit_id": "u", "attributes": {f"k{i}": i for i in range(101)}}, "attributes"),
    ({"unit_id": "u", "flags": "gated"}, "flags"),
    ({"unit_id": "u", "flags": None}, "flags"),
    ({"unit_id": "u", "flags": [1]}, "flags"),
    ({"unit_id": "u", "flags": [""]}, "flags"),
    ({"unit_id": "u", "flags": ["x" * 129]}, "flags"),
    ({"unit_id": "u", "flags": ["a"] * 201}, "flags"),
    ({"unit_id": "u", "flags": ["a\x00"]}, "flags"),
])
def test_bad_input_names_the_field(client_api, flag_state, body, field):
    response = post(client_api, body)
    assert response.status_code == 400, response.content
    assert field in response.json()


@pytest.mark.parametrize("raw", [
    "not json", "[1, 2]", "null", '"u"', '{"unit_id": NaN}', '{"unit_id": "u", "attributes": {"a": 1e400}}',
    '{"unit_id": "u", "extra": 1e400}', '{"unit_id": "\\ud800"}', '{"unit_id": "u", "flags": ["\\udfff"]}',
    '{"unit_id": "u", "x": ' + "[" * 5000 + "]" * 5000 + "}",
])
def test_hostile_bodies_are_400_never_500(client_api, flag_state, raw):
    response = client_api.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()


def test_oversized_body_is_413_and_keys_are_required(client_api, flag_state, api_client_for):
    response = post(client_api, {"unit_id": "u", "attributes": {"pad": "x" * 70_000}})
    assert response.status_code == 413 and "detail" in response.json()
    assert post(api_client_for(None), {"unit_id": "u"}).status_code == 401
    assert post(api_client_for("analyst"), {"unit_id": "u"}).status_code == 200


def test_no_queries_once_warm(client_api, flag_state, django_assert_num_queries):
    post(client_api, {"unit_id": "warm-up"})
    with django_assert_num_queries(0):
        assert post(client_api, {"unit_id": "u-1", "attributes": {"country": "US"}}).status_code == 200


def test_documented_serializer_agrees_with_the_fast_validator():
    bodies = [
        {"unit_id": "u"}, {"unit_id": "u", "flags": ["a", "b"]}, {"unit_id": "u", "flags": []},
        {"unit_id": "u", "flags": None}, {"unit_id": "u", "flags": [3]}, {"unit_id": 3, "flags": "x"},
        {"unit_id": "u", "attributes": {"a": 1}, "flags": ["x" * 129]}, {},
    ]
    from rest_framework import serializers

    for body in bodies:
        documented = FlagEvaluateRequestSerializer(data=body)
        ok = documented.is_valid()
        try:
            unit_id, attributes, keys = parse_flag_request(body)
        except serializers.ValidationError as exc:
            assert not ok and set(exc.detail) == set(documented.errors), body
            continue
        assert ok, (body, documented.errors)
        assert (unit_id, attributes, keys) == (
            documented.validated_data["unit_id"], documented.validated_data["attributes"],
            documented.validated_data.get("flags"))
