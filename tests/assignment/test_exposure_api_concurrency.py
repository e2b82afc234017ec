"""Concurrent SDK batches on PostgreSQL (+ Redis): the first exposure per unit wins whatever the
interleaving, and disagreement counts are exact (append-only rows: nothing to lock)."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from assignment import exposure_api, runtime, services
from assignment.models import Exposure
from assignment.selectors import sdk_exposure_checks

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def running(transactional_db, settings):
    import uuid

    from experiments import services as experiment_services
    from experiments.models import Metric
    from tests.conftest import TEST_REDIS_URL

    settings.REDIS_URL = TEST_REDIS_URL
    settings.ASSIGNMENT_REDIS_PREFIX = f"{{test-{uuid.uuid4().hex[:8]}}}"
    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    experiment = experiment_services.start_experiment(experiment_services.create_experiment({
        "key": "race", "name": "race", "traffic_allocation": 100, "planned_sample_size": 1000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    }))
    runtime.reset()
    yield experiment
    client = __import__("assignment.exposures", fromlist=["x"]).redis_client()
    for key in client.scan_iter(f"{settings.ASSIGNMENT_REDIS_PREFIX}*"):
        client.delete(key)
    runtime.reset()


def test_concurrent_batches_first_exposure_wins(running):
    state = runtime.current()
    units = [f"u-{i}" for i in range(200)]
    variants = {u: state.evaluator.evaluate("race", u).variant for u in units}
    start = datetime.now(UTC) - timedelta(hours=1)
    n = 6
    barrier = threading.Barrier(n + 1)
    errors: list[BaseException] = []

    def sender(k: int) -> None:
        try:
            items = [{"experiment": "race", "variant": variants[u], "unit_id": u,
                      "timestamp": (start + timedelta(minutes=k)).isoformat(),
                      "config_version": state.client_version} for u in units]
            items += [{"experiment": "race", "variant": "nope", "unit_id": u,
                       "config_version": state.client_version} for u in units[:10]]
            barrier.wait()
            result = exposure_api.check_and_record(items)
            assert (result["accepted"], result["mismatched"]) == (200, 10)
            services.flush_exposures()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    def flusher() -> None:
        barrier.wait()
        for _ in range(5):
            services.flush_exposures()
        connection.close()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(n)] + [threading.Thread(target=flusher)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    services.flush_exposures()
    rows = {e.unit_id: e for e in Exposure.objects.filter(experiment=running).select_related("variant")}
    assert len(rows) == 200
    assert all(rows[u].variant.key == variants[u] for u in units)
    assert all(abs(rows[u].first_seen - start) < timedelta(seconds=1) for u in units)  # sender 0
    assert all(abs(rows[u].last_seen - (start + timedelta(minutes=n - 1))) < timedelta(seconds=1) for u in units)
    assert sdk_exposure_checks(running.pk)["mismatched"] == 10 * n
