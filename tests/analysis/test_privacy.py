"""Erasure of a unit: events, exposures (stored and buffered), overrides and their history."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from analysis import ingestion, privacy, queries
from analysis.models import Event
from assignment import exposures
from assignment.models import Exposure
from experiments import services
from experiments.models import Metric, Override

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
WEIRD_IDS = ["u/with/slashes", "ümlaut 日本 space", "100%?#&=+;", "a" * 256, "..", "trailing/"]


@pytest.fixture(autouse=True)
def _empty_exposure_buffer():
    exposures.local_buffer.take()
    yield
    exposures.local_buffer.take()


@pytest.fixture
def experiment(db):
    Metric.objects.create(key="buy", name="Buy", event="purchase", kind="sum")
    return services.create_experiment({
        "key": "exp", "name": "exp", "cuped": False,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "buy", "role": "primary"}], "targeting": [],
    })


def seed_unit(experiment, unit_id, *, events=3, override=True):
    variant = experiment.variants.get(key="b")
    Exposure.objects.create(experiment=experiment, variant=variant, unit_id=unit_id,
                            first_seen=T0, last_seen=T0, attributes={"country": "CN"})
    ingestion.ingest_events([
        {"event_id": f"{uuid.uuid4()}", "unit_id": unit_id, "event": "purchase", "value": 10.0,
         "timestamp": "2026-11-20T13:00:00Z"} for i in range(events)
    ])
    if override:
        o = Override.objects.create(experiment=experiment, unit_id=unit_id, variant=variant, note="qa")
        o.note = "changed"
        o.save()


def test_erase_unit_deletes_everything_about_the_unit_only(experiment):
    seed_unit(experiment, "victim")
    seed_unit(experiment, "bystander", events=2)
    assert Override.history.filter(unit_id="victim").count() == 2
    assert privacy.erase_unit("victim") == {"events": 3, "exposures": 1, "overrides": 1}
    assert not Event.objects.filter(unit_id="victim").exists()
    assert not Exposure.objects.filter(unit_id="victim").exists()
    assert not Override.objects.filter(unit_id="victim").exists()
    assert not Override.history.filter(unit_id="victim").exists()  # incl. the deletion record
    assert Event.objects.filter(unit_id="bystander").count() == 2
    assert Exposure.objects.filter(unit_id="bystander").count() == 1
    assert Override.history.filter(unit_id="bystander").count() == 2
    stats = queries.metric_statistics(experiment)["buy"]["b"]
    assert (stats.n, stats.sum) == (1, 20.0)
    assert privacy.erase_unit("victim") == {"events": 0, "exposures": 0, "overrides": 0}


def test_buffered_exposures_do_not_come_back(experiment):
    variant = experiment.variants.get(key="b")
    exposures.local_buffer.extend([(experiment.pk, variant.pk, "buffered", T0.timestamp(), {})])
    privacy.erase_unit("buffered")
    exposures.flush()
    assert not Exposure.objects.filter(unit_id="buffered").exists()


@pytest.mark.parametrize("unit_id", WEIRD_IDS)
def test_endpoint_erases_url_encoded_unit_ids(experiment, api_client_for, unit_id):
    seed_unit(experiment, unit_id, events=2)
    response = api_client_for("admin").delete(f"/api/v1/units/{quote(unit_id, safe='')}")
    assert response.status_code == 200, response.content
    assert response.json() == {"unit_id": unit_id, "deleted": {"events": 2, "exposures": 1, "overrides": 1}}
    assert not Event.objects.filter(unit_id=unit_id).exists()


@pytest.mark.parametrize("scope", ["client", "analyst"])
def test_only_admins_may_erase(experiment, api_client_for, scope):
    seed_unit(experiment, "u1")
    assert api_client_for(scope).delete("/api/v1/units/u1").status_code == 403
    assert api_client_for(None).delete("/api/v1/units/u1").status_code == 401
    assert Event.objects.filter(unit_id="u1").count() == 3


@pytest.mark.parametrize(("path", "field"), [("a" * 257, "unit_id"), ("a%00b", "unit_id")])
def test_impossible_unit_ids_are_400(db, api_client_for, path, field):
    response = api_client_for("admin").delete(f"/api/v1/units/{path}")
    assert response.status_code == 400
    assert field in response.json()


def test_unknown_unit_is_200_with_zero_counts(db, api_client_for):
    response = api_client_for("admin").delete("/api/v1/units/nobody")
    assert response.status_code == 200
    assert response.json()["deleted"] == {"events": 0, "exposures": 0, "overrides": 0}
