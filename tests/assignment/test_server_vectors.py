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


@pytest.fixture
def vector_config(primary_metric):
    layers = {
        key: Layer.objects.create(key=key, name=key, salt=spec["salt"], holdout_percent=spec["holdout_percent"])
        for key, spec in DOCUMENT["layers"].items()
    }
    for spec in DOCUMENT["experiments"]:
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


def test_config_document_equals_the_vector_document(client_api, vector_config):
    served = client_api.get("/api/v1/config").json()
    for field in ("schema_version", "hash", "layers"):
        assert served[field] == DOCUMENT[field]
    expected = {e["key"]: e for e in DOCUMENT["experiments"]}
    assert {e["key"]: e for e in served["experiments"]} == expected


def test_api_answers_reproduce_every_vector_case(client_api, vector_config):
    for case in VECTORS["cases"]:
        body = {"unit_id": case["unit_id"], "attributes": case["attributes"], "experiments": [case["experiment"]]}
        response = client_api.post("/api/v1/assignments", data=json.dumps(body), content_type="application/json")
        [answer] = response.json()["assignments"]
        assert (answer["variant"], answer["in_experiment"], answer["reason"]) == (
            case["variant"], case["in_experiment"], case["reason"]
        ), case
