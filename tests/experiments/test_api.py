"""The definitions API: the contract and every error path."""
import pytest

from experiments.models import Experiment

from .conftest import experiment_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(admin_api, metrics):
    return admin_api


def test_create_and_read_experiment(api):
    r = api.post("/api/v1/experiments", experiment_data(), format="json")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["key"] == "checkout-button" and body["status"] == "draft"
    assert body["variants"][1]["payload"] == {"color": "green"}
    assert body["metrics"] == [{"metric": "purchase", "role": "primary", "non_inferiority_margin": 0.02}]
    assert body["targeting"][0]["values"] == ["CN", "US"]
    r = api.get("/api/v1/experiments/checkout-button")
    assert r.status_code == 200 and r.json()["salt"] == "checkout-button"
    assert api.get("/api/v1/experiments").json()[0]["key"] == "checkout-button"
    assert Experiment.objects.get().history.first().history_change_reason.startswith("created by api-key:")


def test_create_with_layer_by_key(api, layer):
    r = api.post("/api/v1/experiments", experiment_data(layer="checkout", layer_share=50), format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["layer"] == "checkout"


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "green", "weight": 40}]}, "variants"),
        ({"variants": [{"key": "control", "weight": 100, "is_control": True}]}, "variants"),
        ({"key": "Not A Slug!"}, "key"),
        ({"traffic_allocation": 150}, "traffic_allocation"),
        ({"metrics": [{"metric": "nope", "role": "primary"}]}, "metrics"),
        ({"metrics": [{"metric": "purchase", "role": "boss"}]}, "metrics"),
        ({"targeting": [{"attribute": "country", "operator": "like", "values": ["x"]}]}, "targeting"),
        ({"targeting": [{"attribute": "country", "operator": "equals", "values": ["a", "b"]}]}, "targeting"),
        ({"layer": "missing"}, "layer"),
        ({"significance_level": 0.9}, "significance_level"),
        ({"variants": "nope"}, "variants"),
        ({"variants": [{"key": "control", "weight": 50, "is_control": True, "payload": [1]}, {"key": "g", "weight": 50}]}, "variants"),
    ],
)
def test_invalid_experiment_gives_400_naming_the_field(api, overrides, field):
    r = api.post("/api/v1/experiments", experiment_data(**overrides), format="json")
    assert r.status_code == 400, r.content
    assert field in r.json(), r.json()
    assert not Experiment.objects.exists()


def test_duplicate_key_400(api):
    assert api.post("/api/v1/experiments", experiment_data(), format="json").status_code == 201
    r = api.post("/api/v1/experiments", experiment_data(), format="json")
    assert r.status_code == 400 and "key" in r.json()


def test_malformed_json_is_400(api):
    r = api.post("/api/v1/experiments", data="{not json", content_type="application/json")
    assert r.status_code == 400 and "detail" in r.json()
    r = api.post("/api/v1/experiments", data="[]", content_type="application/json")
    assert r.status_code == 400


def test_lifecycle_over_the_api(api):
    api.post("/api/v1/experiments", experiment_data(), format="json")
    r = api.post("/api/v1/experiments/checkout-button/pause")
    assert r.status_code == 400 and "status" in r.json()
    r = api.post("/api/v1/experiments/checkout-button/start")
    assert r.status_code == 200 and r.json()["status"] == "running"
    r = api.patch("/api/v1/experiments/checkout-button", {"traffic_allocation": 50}, format="json")
    assert r.status_code == 400 and "traffic_allocation" in r.json()
    r = api.patch("/api/v1/experiments/checkout-button", {"key": "x"}, format="json")
    assert r.status_code == 400 and "key" in r.json()
    r = api.patch("/api/v1/experiments/checkout-button", {"variants": [
        {"key": "control", "weight": 10, "is_control": True}, {"key": "green", "weight": 90}]}, format="json")
    assert r.status_code == 400 and "variants" in r.json()
    r = api.patch("/api/v1/experiments/checkout-button", {"hypothesis": "Updated"}, format="json")
    assert r.status_code == 200 and r.json()["hypothesis"] == "Updated"
    assert api.post("/api/v1/experiments/checkout-button/pause").json()["status"] == "paused"
    assert api.post("/api/v1/experiments/checkout-button/resume").json()["status"] == "running"
    r = api.post("/api/v1/experiments/checkout-button/complete", {"shipped_variant": "purple"}, format="json")
    assert r.status_code == 400 and "shipped_variant" in r.json()
    r = api.post("/api/v1/experiments/checkout-button/complete", {"shipped_variant": "green"}, format="json")
    assert r.status_code == 200 and r.json()["shipped_variant"] == "green"
    assert api.post("/api/v1/experiments/checkout-button/archive").json()["status"] == "archived"


def test_start_without_primary_metric_is_400(api):
    api.post("/api/v1/experiments", experiment_data(metrics=[]), format="json")
    r = api.post("/api/v1/experiments/checkout-button/start")
    assert r.status_code == 400 and "primary metric" in r.json()["metrics"][0]


def test_unknown_experiment_is_json_404(api):
    for r in (api.get("/api/v1/experiments/nope"), api.post("/api/v1/experiments/nope/start"),
              api.get("/api/v1/no-such-endpoint")):
        assert r.status_code == 404
        assert r["Content-Type"].startswith("application/json")


def test_metrics_and_layers(api):
    r = api.post("/api/v1/metrics", {"key": "rpo", "name": "Revenue per order", "event": "purchase", "kind": "ratio"}, format="json")
    assert r.status_code == 400 and "denominator_event" in r.json()
    r = api.post("/api/v1/metrics", {"key": "rpo", "name": "RPO", "event": "purchase", "kind": "ratio", "denominator_event": "purchase"}, format="json")
    assert r.status_code == 201
    r = api.post("/api/v1/metrics", {"key": "bad", "name": "x", "event": "has space", "kind": "count"}, format="json")
    assert r.status_code == 400 and "event" in r.json()
    r = api.post("/api/v1/metrics", {"key": "capped", "name": "x", "event": "e", "kind": "sum", "cap": -1}, format="json")
    assert r.status_code == 400 and "cap" in r.json()
    assert {m["key"] for m in api.get("/api/v1/metrics").json()} >= {"purchase", "rpo"}
    r = api.post("/api/v1/layers", {"key": "home", "name": "Home", "holdout_percent": 5}, format="json")
    assert r.status_code == 201 and r.json()["salt"] == "home"
    r = api.post("/api/v1/layers", {"key": "home2", "name": "Home", "holdout_percent": 101}, format="json")
    assert r.status_code == 400 and "holdout_percent" in r.json()
    assert api.get("/api/v1/layers/home").json()["holdout_percent"] == "5.00"


def test_scopes(api_client_for, metrics):
    data = experiment_data()
    assert api_client_for(None).get("/api/v1/experiments").status_code == 401
    assert api_client_for("client").get("/api/v1/experiments").status_code == 403
    assert api_client_for("analyst").get("/api/v1/experiments").status_code == 200
    assert api_client_for("analyst").post("/api/v1/experiments", data, format="json").status_code == 403
    assert api_client_for("admin").post("/api/v1/experiments", data, format="json").status_code == 201
    r = api_client_for("client").post("/api/v1/experiments/checkout-button/start")
    assert r.status_code == 403 and "scope" in r.json()["detail"]


def test_start_without_a_plan_is_400_naming_planned_sample_size(api):
    body = experiment_data()
    body.pop("planned_sample_size", None)
    assert api.post("/api/v1/experiments", body, format="json").status_code == 201
    r = api.post("/api/v1/experiments/checkout-button/start")
    assert r.status_code == 400 and "planned_sample_size" in r.json()
