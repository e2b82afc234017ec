"""The demo definitions a new user sees on first run: metrics, a layer, a running experiment and a
feature flag rolled out to 10 % in production."""
from __future__ import annotations

from django.db import transaction

from . import flags, services
from .models import Experiment, Flag, Layer, Metric

DEMO_METRICS = [
    {"key": "purchase", "name": "Purchase conversion", "event": "purchase", "kind": "conversion",
     "description": "Share of users who buy at least once within 7 days.", "conversion_window_hours": 168},
    {"key": "revenue", "name": "Revenue per user", "event": "purchase", "kind": "sum", "cap": 500.0},
    {"key": "orders", "name": "Orders per user", "event": "purchase", "kind": "count"},
    {"key": "revenue-per-order", "name": "Revenue per order", "event": "purchase", "kind": "ratio",
     "numerator_aggregation": "sum", "denominator_event": "purchase", "denominator_aggregation": "count"},
    {"key": "refund", "name": "Refund rate", "event": "refund", "kind": "conversion", "direction": "decrease",
     "description": "Guardrail: the change must not make more users ask for refunds."},
]
DEMO_EXPERIMENT = {
    "key": "checkout-button",
    "name": "Green checkout button",
    "hypothesis": "A green, larger checkout button makes more users complete their purchase, "
                  "without more refunds.",
    "traffic_allocation": 100,
    "layer_share": 90,
    "planned_sample_size": 40000,
    "planned_duration_days": 14,
    "variants": [
        {"key": "control", "name": "Blue button", "weight": 50, "is_control": True, "payload": {"color": "blue"}},
        {"key": "green", "name": "Green button", "weight": 50, "payload": {"color": "green", "size": "large"}},
    ],
    "metrics": [
        {"metric": "purchase", "role": "primary"},
        {"metric": "revenue", "role": "secondary"},
        {"metric": "orders", "role": "secondary"},
        {"metric": "revenue-per-order", "role": "secondary"},
        # A 1 % refund rate may rise by at most a quarter (to 1.25 %): a margin the planned
        # 40,000 units can show; 2 % relative of a 1 % rate would need millions.
        {"metric": "refund", "role": "guardrail", "non_inferiority_margin": 0.25},
    ],
    "targeting": [{"attribute": "platform", "operator": "in", "values": ["ios", "android", "web"]}],
}


DEMO_FLAG = {
    "key": "new-checkout", "name": "New checkout flow", "value_type": "boolean", "default_value": False,
    "description": "The rebuilt checkout, rolled out gradually: 10 % of production users first.",
    "environments": {
        "production": {"rules": [{"type": "rollout", "value": True, "percent": 10}]},
        "staging": {"rules": [{"type": "force", "value": True}]},  # everyone on staging sees it
    },
}


def ensure_demo_flag() -> Flag:
    """The demo flag (boolean, default off, 10 % rollout in production), unless it exists."""
    return Flag.objects.filter(key=DEMO_FLAG["key"]).first() or flags.create_flag(DEMO_FLAG, actor="demo")


@transaction.atomic
def ensure_demo_definitions() -> tuple[Experiment, bool]:
    """Create the demo definitions unless they exist; return the experiment and whether it is new."""
    ensure_demo_flag()
    existing = Experiment.objects.filter(key=DEMO_EXPERIMENT["key"]).first()
    if existing is not None:
        return existing, False
    for data in DEMO_METRICS:
        if not Metric.objects.filter(key=data["key"]).exists():
            services.save_metric(Metric(), data, actor="demo")
    layer = Layer.objects.filter(key="checkout").first() or services.save_layer(
        Layer(), {"key": "checkout", "name": "Checkout flow", "holdout_percent": 5,
                  "description": "Checkout experiments; 5 % of users see none of them."}, actor="demo"
    )
    experiment = services.create_experiment({**DEMO_EXPERIMENT, "layer": layer}, actor="demo")
    experiment = services.start_experiment(experiment, actor="demo")
    return experiment, True
