from __future__ import annotations

import pytest

from assignment import exposures, runtime


@pytest.fixture(autouse=True)
def _fresh_assignment_state():
    """No configuration or buffered exposure leaks from one test into another."""
    def clear():
        runtime.reset()
        exposures.local_buffer.take()
        exposures.outbox.take()
        exposures._redis_down_until = 0.0

    clear()
    yield
    clear()


@pytest.fixture(autouse=True)
def _local_exposure_buffer_unless_redis_mode(request, settings):
    """These tests inspect the in-process buffer; the PostgreSQL pass sets REDIS_URL for the
    whole run, so tests opt into the Redis queue explicitly with the ``redis_mode`` fixture."""
    if "redis_mode" not in request.fixturenames:
        settings.REDIS_URL = None


@pytest.fixture
def client_api(api_client_for):
    return api_client_for("client")


@pytest.fixture
def primary_metric(db):
    from experiments.models import Metric

    return Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")


@pytest.fixture
def make_experiment(primary_metric):
    """``make_experiment(key, start=True, **fields)`` through the experiments services."""
    from experiments import services

    def make(key="checkout-button", *, start=True, **overrides):
        data = {
            "key": key,
            "name": key,
            "traffic_allocation": 100,
            "planned_sample_size": 10_000,
            "variants": [
                {"key": "control", "weight": 50, "is_control": True, "payload": {"color": "grey"}},
                {"key": "green", "weight": 50, "payload": {"color": "green"}},
            ],
            "metrics": [{"metric": "purchase", "role": "primary"}],
            "targeting": [],
        }
        data.update(overrides)
        experiment = services.create_experiment(data)
        if start:
            experiment = services.start_experiment(experiment)
        return experiment

    return make
