"""The REST endpoints: answers, validation, scopes, the config document and zero queries."""
from __future__ import annotations

import json

import pytest

from assignment import exposures
from assignment.evaluator import Evaluator
from experiments import services
from experiments.models import Layer, Override
from experiments.phases import start_new_phase

URL = "/api/v1/assignments"


def post(client, body, **extra):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **extra)


def single(client, key, **params):
    return client.get(f"/api/v1/experiments/{key}/assignment", params)


@pytest.fixture
def checkout(make_experiment):
    return make_experiment(
        "checkout-button",
        targeting=[{"attribute": "country", "operator": "in", "values": ["CN", "US"]}],
    )


def test_batch_answer_shape(client_api, checkout):
    response = post(client_api, {"unit_id": "u-123", "attributes": {"country": "CN", "platform": "ios"},
                                 "experiments": ["checkout-button"]})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["unit_id"] == "u-123"
    [answer] = body["assignments"]
    assert set(answer) == {"experiment", "variant", "in_experiment", "reason", "detail", "payload"}
    assert answer["experiment"] == "checkout-button"
    assert answer["in_experiment"] is True and answer["reason"] == "assigned"
    assert answer["payload"] == {"control": {"color": "grey"}, "green": {"color": "green"}}[answer["variant"]]
    assert "degraded" not in body
    assert response["X-Config-Version"]


def test_same_answer_every_time_and_from_the_single_endpoint(client_api, checkout):
    first = post(client_api, {"unit_id": "u-9", "attributes": {"country": "US"}}).json()
    again = post(client_api, {"unit_id": "u-9", "attributes": {"country": "US"}}).json()
    assert first == again
    one = single(client_api, "checkout-button", unit_id="u-9", country="US").json()
    assert one == {"unit_id": "u-9", **first["assignments"][0]}


def test_omitted_experiments_means_every_running_one(client_api, make_experiment):
    make_experiment("a")
    make_experiment("b")
    make_experiment("c", start=False)
    body = post(client_api, {"unit_id": "u-1"}).json()
    assert sorted(a["experiment"] for a in body["assignments"]) == ["a", "b"]


def test_targeting_failure_says_why_and_serves_control(client_api, checkout):
    answer = single(client_api, "checkout-button", unit_id="u-1", country="DE").json()
    assert answer["in_experiment"] is False
    assert answer["reason"] == "targeting"
    assert answer["detail"] == "country 'DE' not in ['CN', 'US']"
    assert answer["variant"] == "control" and answer["payload"] == {"color": "grey"}


def test_not_running_and_shipped(client_api, make_experiment):
    draft = make_experiment("draft-one", start=False)
    answer = single(client_api, draft.key, unit_id="u-1").json()
    assert (answer["in_experiment"], answer["reason"], answer["payload"]) == (False, "not_running", {"color": "grey"})
    assert "draft" in answer["detail"]
    running = make_experiment("to-ship")
    services.pause_experiment(running)
    assert single(client_api, "to-ship", unit_id="u-1").json()["reason"] == "not_running"
    services.complete_experiment(running, shipped_variant="green")
    answer = single(client_api, "to-ship", unit_id="u-1").json()
    assert (answer["variant"], answer["in_experiment"], answer["reason"], answer["payload"]) == (
        "green", False, "shipped", {"color": "green"}
    )


def test_override_from_the_admin_model_wins(client_api, checkout):
    variant = checkout.variants.get(key="green")
    unit = next(
        f"u-{i}" for i in range(200)
        if single(client_api, checkout.key, unit_id=f"u-{i}", country="CN").json()["variant"] == "control"
    )
    Override.objects.create(experiment=checkout, unit_id=unit, variant=variant, note="QA")
    answer = single(client_api, checkout.key, unit_id=unit, country="DE").json()
    assert (answer["variant"], answer["in_experiment"], answer["reason"]) == ("green", True, "override")


def test_layer_answers(client_api, make_experiment):
    layer = Layer.objects.create(key="checkout", name="Checkout", holdout_percent=20)
    make_experiment("l-a", layer=layer, layer_share=40)
    make_experiment("l-b", layer=layer, layer_share=40)
    reasons = {"l-a": set(), "l-b": set()}
    for i in range(300):
        answers = post(client_api, {"unit_id": f"u-{i}", "experiments": ["l-a", "l-b"]}).json()["assignments"]
        assert sum(a["in_experiment"] for a in answers) <= 1
        for a in answers:
            reasons[a["experiment"]].add(a["reason"])
    for seen in reasons.values():
        assert {"assigned", "layer_holdout", "layer_other_experiment"} <= seen


# --- validation ---------------------------------------------------------------------------------

def test_unknown_experiment_keys_are_answered_not_failed(client_api, checkout):
    """One unknown key no longer fails the request: it gets reason unknown_experiment, in
    request order, and the known ones are served (and recorded) as usual."""
    body = post(client_api, {"unit_id": "u-1", "experiments": ["nope", "checkout-button", "nope"]}).json()
    answers = body["assignments"]
    assert [a["experiment"] for a in answers] == ["nope", "checkout-button"]
    assert answers[0] == {
        "experiment": "nope", "variant": None, "in_experiment": False,
        "reason": "unknown_experiment", "detail": "no experiment with this key", "payload": {},
    }
    assert answers[1]["reason"] != "unknown_experiment"


@pytest.mark.parametrize(("body", "field"), [
    ({}, "unit_id"),
    ({"unit_id": ""}, "unit_id"),
    ({"unit_id": None}, "unit_id"),
    ({"unit_id": 123}, "unit_id"),
    ({"unit_id": ["u"]}, "unit_id"),
    ({"unit_id": "x" * 257}, "unit_id"),
    ({"unit_id": "a\x00b"}, "unit_id"),
    ({"unit_id": "\ud800"}, "unit_id"),
    ({"unit_id": "u", "attributes": []}, "attributes"),
    ({"unit_id": "u", "attributes": "country=CN"}, "attributes"),
    ({"unit_id": "u", "attributes": {"a": {"b": 1}}}, "attributes"),
    ({"unit_id": "u", "attributes": {"a": [1]}}, "attributes"),
    ({"unit_id": "u", "attributes": {"a": "x\x00"}}, "attributes"),
    ({"unit_id": "u", "attributes": {"a": "x" * 1025}}, "attributes"),
    ({"unit_id": "u", "attributes": {f"k{i}": i for i in range(101)}}, "attributes"),
    ({"unit_id": "u", "experiments": "checkout-button"}, "experiments"),
    ({"unit_id": "u", "experiments": [1]}, "experiments"),
])
def test_bad_input_names_the_field(client_api, checkout, body, field):
    raw = json.dumps(body, ensure_ascii=True) if "\ud800" not in str(body) else '{"unit_id": "\\ud800"}'
    response = client_api.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_unstorable_attribute_names_are_dropped(client_api, checkout):
    body = {"unit_id": "u", "attributes": {"country": "CN", "bad\x00name": 1, "": 2}}
    answer = post(client_api, body).json()["assignments"][0]
    assert answer["reason"] == "assigned"
    assert exposures.local_buffer.take()[0][4] == {"country": "CN", "": 2}


def test_unit_id_is_kept_byte_for_byte(client_api, checkout):
    body = post(client_api, {"unit_id": "  spaced  ", "attributes": {"country": "CN"}}).json()
    assert body["unit_id"] == "  spaced  "
    assert post(client_api, {"unit_id": "x" * 256}).status_code == 200


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", "null", '"u"', '{"unit_id": NaN}'])
def test_malformed_bodies_are_400(client_api, checkout, raw):
    response = client_api.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()


def test_oversized_body_is_413_json(client_api, checkout):
    response = post(client_api, {"unit_id": "u", "attributes": {"pad": "x" * 70_000}})
    assert response.status_code == 413
    assert "detail" in response.json()


def test_single_endpoint_validation(client_api, checkout):
    assert single(client_api, "nope", unit_id="u").status_code == 404
    assert single(client_api, "nope", unit_id="u").json()["detail"]
    missing = single(client_api, "checkout-button")
    assert missing.status_code == 400 and "unit_id" in missing.json()
    assert "unit_id" in single(client_api, "checkout-button", unit_id="").json()
    assert "unit_id" in single(client_api, "checkout-button", unit_id="x" * 257).json()
    assert "attributes" in single(client_api, "checkout-button", unit_id="u", a="x" * 2000).json()


def test_query_attributes_are_strings_and_compare_numerically(client_api, make_experiment):
    make_experiment("adults", targeting=[{"attribute": "age", "operator": "gte", "values": [18]}])
    assert single(client_api, "adults", unit_id="u", age="18").json()["reason"] != "targeting"
    assert single(client_api, "adults", unit_id="u", age="17").json()["reason"] == "targeting"


# --- scopes -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("scope", "status"), [(None, 401), ("client", 200), ("analyst", 200), ("admin", 200)])
def test_scope_client_or_higher(api_client_for, checkout, scope, status):
    client = api_client_for(scope)
    assert post(client, {"unit_id": "u"}).status_code == status
    assert single(client, "checkout-button", unit_id="u").status_code == status
    assert client.get("/api/v1/config").status_code == status


# --- the configuration document ---------------------------------------------------------------

def test_config_document_etag_and_304(client_api, checkout):
    response = client_api.get("/api/v1/config")
    assert response.status_code == 200
    etag = response["ETag"]
    document = response.json()
    assert etag == f'"{document["version"]}"'
    assert document["schema_version"] == 1
    assert document["hash"] == {"algorithm": "sha256", "buckets": 10000}
    [spec] = document["experiments"]
    assert spec["key"] == "checkout-button" and spec["status"] == "running"
    assert spec["targeting"] == [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}]
    assert client_api.get("/api/v1/config", HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert client_api.get("/api/v1/config", HTTP_IF_NONE_MATCH=f'W/{etag}').status_code == 304
    assert client_api.get("/api/v1/config", HTTP_IF_NONE_MATCH='"other"').status_code == 200
    start_new_phase(checkout, {"targeting": []}, rerandomize=False, reason="all countries")
    changed = client_api.get("/api/v1/config", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert changed.json()["experiments"][0]["targeting"] == []
    assert changed.json()["experiments"][0]["phase"] == 2


def test_local_evaluator_on_the_document_agrees_with_the_server(client_api, make_experiment):
    layer = Layer.objects.create(key="checkout", name="Checkout", holdout_percent=5)
    make_experiment("l-a", layer=layer, layer_share=45, traffic_allocation=80,
                    targeting=[{"attribute": "country", "operator": "in", "values": ["CN", "US"]}])
    make_experiment("l-b", layer=layer, layer_share=50)
    make_experiment("three", variants=[
        {"key": "a", "weight": 33.33, "is_control": True}, {"key": "b", "weight": 33.33},
        {"key": "c", "weight": 33.34, "payload": {"c": [1, 2]}},
    ], traffic_allocation=40)
    shipped = make_experiment("shipped")
    services.complete_experiment(shipped, shipped_variant="green")
    evaluator = Evaluator.from_json(client_api.get("/api/v1/config").content)
    keys = ["l-a", "l-b", "three", "shipped"]
    for i in range(200):
        attrs = {"country": ["CN", "DE", "US"][i % 3]}
        server = post(client_api, {"unit_id": f"u-{i}", "attributes": attrs, "experiments": keys}).json()
        local = [a.as_dict() for a in evaluator.evaluate_many(f"u-{i}", attrs, keys)]
        assert server["assignments"] == local


# --- speed ------------------------------------------------------------------------------------

def test_hot_path_makes_zero_queries_once_warm(client_api, make_experiment, django_assert_num_queries, settings):
    settings.ASSIGNMENT_EXPOSURE_BUFFER_SIZE = 10_000
    for i in range(10):
        make_experiment(f"exp-{i}")
    post(client_api, {"unit_id": "warm-up"})  # loads the key and the configuration
    single(client_api, "exp-1", unit_id="warm-up")
    client_api.get("/api/v1/config")
    with django_assert_num_queries(0):
        response = post(client_api, {"unit_id": "u-1", "attributes": {"country": "CN"}})
        assert response.status_code == 200
        assert len(response.json()["assignments"]) == 10
        assert single(client_api, "exp-3", unit_id="u-2").status_code == 200
        assert client_api.get("/api/v1/config").status_code == 200
    assert len(exposures.local_buffer) >= 11  # exposures were queued, not written
