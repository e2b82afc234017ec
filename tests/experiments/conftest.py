import pytest

from experiments import services
from experiments.models import Layer, Metric


@pytest.fixture
def metrics(db):
    purchase = Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    revenue = Metric.objects.create(key="revenue", name="Revenue", event="purchase", kind="sum")
    latency = Metric.objects.create(key="latency", name="Page latency", event="page_load", kind="sum", direction="decrease")
    return {"purchase": purchase, "revenue": revenue, "latency": latency}


@pytest.fixture
def layer(db):
    return Layer.objects.create(key="checkout", name="Checkout", holdout_percent=10)


def experiment_data(key="checkout-button", **overrides):
    data = {
        "key": key,
        "name": "Checkout button colour",
        "hypothesis": "A green button increases purchases.",
        "traffic_allocation": 100,
        "planned_sample_size": 10_000,
        "variants": [
            {"key": "control", "weight": 50, "is_control": True},
            {"key": "green", "weight": 50, "payload": {"color": "green"}},
        ],
        "metrics": [{"metric": "purchase", "role": "primary"}],
        "targeting": [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}],
    }
    data.update(overrides)
    return data


@pytest.fixture
def make_experiment(metrics):
    def make(**overrides):
        return services.create_experiment(experiment_data(**overrides), actor="tester")

    return make
