"""The server, configured through the experiments services, reproduces the test vectors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from assignment import vectors
from experiments import services
from experiments.models import Layer, Override
from experiments.phases import start_new_phase

VECTORS = json.loads(Path(vectors.PATH).read_text(encoding="utf-8"))
DOCUMENT = VECTORS["document"]
#: Experiments that need audiences or a per-environment switch, which the experiment services
#: configure elsewhere (environments, audiences); the rest is built here through the services.
BUILT = [e for e in DOCUMENT["experiments"] if not e.get("audiences") and e.get("enabled", True)]
BUILT_KEYS = {e["key"] for e in BUILT}


@pytest.fixture
def vector_config(primary_metric):
    layers = {
        key: Layer.objects.create(key=key, name=key, salt=spec["salt"], holdout_percent=spec["holdout_percent"])
        for key, spec in DOCUMENT["layers"].items()
    }
    for spec in BUILT:
        phase = spec.get("phase", 1)
        data = {
            "key": spec["key"], "name": spec["key"], "salt": spec["salt"] if phase == 1 else spec["key"],
            "traffic_allocation": spec["traffic_allocation"],
            "planned_sample_size": 10000,
            "variants": [dict(v) for v in spec["variants"]],
            "metrics": [{"metric": "purchase", "role": "primary"}],
            "targeting": spec["targeting"],
        }
        if spec["layer"]:
            start, end = spec["layer_range"]
            data.update(layer=layers[spec["layer"]], layer_share=(end - start) / 100)
        experiment = services.create_experiment(data)
        for unit, variant in spec["overrides"].items():
            Override.objects.create(experiment=experiment, unit_id=unit, variant=experiment.variants.get(key=variant))
        if spec["status"] == "draft":
            continue
        experiment = services.start_experiment(experiment)
        for _ in range(phase - 1):  # re-randomised phases: the salt becomes "<key>.phase<n>"
            start_new_phase(experiment, {}, rerandomize=True, reason="test vectors")
        if spec["status"] == "paused":
            services.pause_experiment(experiment)
        elif spec["status"] in ("completed", "archived"):
            experiment = services.complete_experiment(experiment, shipped_variant=spec["shipped_variant"])
            if spec["status"] == "archived":
                services.archive_experiment(experiment)


def test_config_document_equals_the_vector_document(admin_api, vector_config):
    served = admin_api.get("/api/v1/config?full=true").json()
    for field in ("schema_version", "hash", "layers"):
        assert served[field] == DOCUMENT[field]
    served_experiments = {e["key"]: e for e in served["experiments"]}
    expected = {e["key"]: e for e in BUILT}
    assert {k: v for k, v in served_experiments.items() if k in expected} == expected


def test_api_answers_reproduce_every_vector_case(client_api, vector_config):
    for case in VECTORS["cases"]:
        if case["experiment"] not in BUILT_KEYS:
            continue
        body = {"unit_id": case["unit_id"], "attributes": case["attributes"], "experiments": [case["experiment"]]}
        response = client_api.post("/api/v1/assignments", data=json.dumps(body), content_type="application/json")
        [answer] = response.json()["assignments"]
        assert (answer["variant"], answer["in_experiment"], answer["reason"]) == (
            case["variant"], case["in_experiment"], case["reason"]
        ), case


def test_client_document_is_the_safe_view_and_answers_every_case(client_api, admin_api, vector_config, settings):
    """A client key gets the client-safe document (section 7a); evaluated locally it answers
    every vector case of the experiments it holds exactly as the full document does."""
    from assignment.clientdoc import client_document, secret_override_salt
    from assignment.evaluator import Evaluator

    served = client_api.get("/api/v1/config").json()
    full = admin_api.get("/api/v1/config?full=true").json()
    assert served == client_document(full, secret_override_salt(settings.SECRET_KEY))
    assert served["scope"] == "client"
    assert "draft-test" not in {e["key"] for e in served["experiments"]}
    assert "qa-user-1" not in json.dumps(served)
    local = Evaluator(served)
    checked = 0
    for case in VECTORS["cases"]:
        if case["experiment"] in local:
            answer = local.evaluate(case["experiment"], case["unit_id"], case["attributes"])
            assert (answer.variant, answer.in_experiment, answer.reason) == (
                case["variant"], case["in_experiment"], case["reason"]), case
            checked += 1
    assert checked > 200


def test_full_document_needs_an_admin_key(api_client_for, vector_config):
    for scope in ("client", "analyst"):
        assert api_client_for(scope).get("/api/v1/config?full=true").status_code == 403
    assert api_client_for("client").get("/api/v1/config?full=false").status_code == 200
    assert api_client_for("admin").get("/api/v1/config?full=maybe").status_code == 400
