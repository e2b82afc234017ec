"""People with roles, and a complete draft experiment, for the governance tests."""
from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from access.roles import ROLE_NAMES


@pytest.fixture
def person(db):
    """``person(name, role)`` -> a user with that role (pm, analyst, viewer, or None for no role)."""

    def make(name: str, role: str | None = None, *, staff: bool | None = None, groups=()) -> User:
        user = User.objects.create(username=name, is_staff=role in ("pm", "analyst") if staff is None else staff)
        if role:
            user.groups.add(Group.objects.get(name=ROLE_NAMES[role]))
        for group in groups:
            user.groups.add(group)
        return user

    return make


@pytest.fixture
def login(person):
    """``login(name, role)`` -> a test client logged in as a new user with that role."""

    def make(name: str, role: str | None = None, **kwargs) -> Client:
        client = Client()
        client.force_login(person(name, role, **kwargs))
        return client

    return make


@pytest.fixture
def purchase(db):
    from experiments.models import Metric

    return Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")


@pytest.fixture
def draft(purchase):
    from experiments import services

    return services.create_experiment({
        "key": "gov-exp", "name": "Governed", "traffic_allocation": 50, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True},
                     {"key": "green", "weight": 50, "payload": {"color": "green"}}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
        "targeting": [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}],
    }, actor="tester")


def management(prefix: str, total: int, initial: int = 0) -> dict:
    return {f"{prefix}-TOTAL_FORMS": str(total), f"{prefix}-INITIAL_FORMS": str(initial),
            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"}


def change_form_data(experiment, **overrides) -> dict:
    """The experiment's change form as the admin would post it, with its current inline rows."""
    data = {
        "key": experiment.key, "name": experiment.name, "hypothesis": experiment.hypothesis,
        "description": experiment.description, "owner": experiment.owner_id or "", "team": experiment.team_id or "",
        "traffic_allocation": str(experiment.traffic_allocation), "salt": experiment.salt,
        "layer": experiment.layer_id or "", "layer_share": "",
        "significance_level": str(experiment.significance_level), "correction": experiment.correction,
        "planned_sample_size": experiment.planned_sample_size or "",
        "planned_duration_days": experiment.planned_duration_days or "",
    }
    if experiment.cuped:
        data["cuped"] = "on"
    variants = list(experiment.variants.all())
    data.update(management("variants", len(variants), len(variants)))
    for i, v in enumerate(variants):
        data.update({f"variants-{i}-id": v.pk, f"variants-{i}-experiment": experiment.pk, f"variants-{i}-key": v.key,
                     f"variants-{i}-name": v.name, f"variants-{i}-weight": str(v.weight),
                     f"variants-{i}-payload": json.dumps(v.payload), f"variants-{i}-position": v.position})
        if v.is_control:
            data[f"variants-{i}-is_control"] = "on"
    metrics = list(experiment.experiment_metrics.all())
    data.update(management("experiment_metrics", len(metrics), len(metrics)))
    for i, m in enumerate(metrics):
        data.update({f"experiment_metrics-{i}-id": m.pk, f"experiment_metrics-{i}-experiment": experiment.pk,
                     f"experiment_metrics-{i}-metric": m.metric_id, f"experiment_metrics-{i}-role": m.role,
                     f"experiment_metrics-{i}-non_inferiority_margin": str(m.non_inferiority_margin),
                     f"experiment_metrics-{i}-position": m.position})
    rules = list(experiment.targeting_rules.all())
    data.update(management("targeting_rules", len(rules), len(rules)))
    for i, r in enumerate(rules):
        data.update({f"targeting_rules-{i}-id": r.pk, f"targeting_rules-{i}-experiment": experiment.pk,
                     f"targeting_rules-{i}-attribute": r.attribute, f"targeting_rules-{i}-operator": r.operator,
                     f"targeting_rules-{i}-values": json.dumps(r.values),
                     f"targeting_rules-{i}-position": r.position})
    overrides_ = list(experiment.overrides.all())
    data.update(management("overrides", len(overrides_), len(overrides_)))
    for i, o in enumerate(overrides_):
        data.update({f"overrides-{i}-id": o.pk, f"overrides-{i}-experiment": experiment.pk,
                     f"overrides-{i}-unit_id": o.unit_id, f"overrides-{i}-variant_key": o.variant.key,
                     f"overrides-{i}-note": o.note})
    data.update(overrides)
    return data
