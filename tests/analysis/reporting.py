"""Helpers shared by the report pipeline tests (pages, API, tasks, simulate): plain functions."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from analysis.management.commands.simulate import simulate
from experiments import services
from experiments.models import Experiment, Metric


def recent_end() -> datetime:
    """A round hour a little in the past: simulated traffic ends there."""
    return timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


METRICS = [
    {"key": "purchase", "name": "Purchase conversion", "event": "purchase", "kind": "conversion",
     "conversion_window_hours": 168},
    {"key": "revenue", "name": "Revenue per user", "event": "purchase", "kind": "sum", "cap": 500.0},
    {"key": "refund", "name": "Refund rate", "event": "refund", "kind": "conversion", "direction": "decrease"},
]


def make_experiment(key: str = "checkout", *, start: bool = True, targeting_attribute: str = "platform",
                    metric_names: dict[str, str] | None = None, **fields) -> Experiment:
    """A two-variant experiment with a primary, a secondary and a guardrail metric."""
    for data in METRICS:
        name = (metric_names or {}).get(data["key"], data["name"])
        Metric.objects.update_or_create(key=data["key"], defaults={**data, "name": name})
    experiment = services.create_experiment({
        "key": key, "name": f"Experiment {key}", "hypothesis": "Green sells more.", "traffic_allocation": 100,
        "planned_sample_size": 4000,
        "variants": [
            {"key": "control", "name": "Blue", "weight": 50, "is_control": True},
            {"key": "green", "name": "Green", "weight": 50},
        ],
        "metrics": [
            {"metric": "purchase", "role": "primary"},
            {"metric": "revenue", "role": "secondary"},
            {"metric": "refund", "role": "guardrail", "non_inferiority_margin": 1.0},  # may at most double
        ],
        "targeting": [{"attribute": targeting_attribute, "operator": "in", "values": ["ios", "android", "web"]}],
        **fields,
    }, actor="test")
    if start:
        experiment = services.start_experiment(experiment, actor="test")
    return experiment


def populate(experiment: Experiment, *, units: int = 2000, lift: float = 0.0, seed: int = 7,
             days: float = 7, end: datetime | None = None, **kwargs):
    """Simulated exposures and events (the real ``simulate``), ending at ``end``."""
    return simulate(experiment, units=units, days=days, lift=lift, seed=seed, end=end or recent_end(),
                    progress=False, **kwargs)
