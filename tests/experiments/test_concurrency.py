"""Every check-then-act in experiments.services, raced on PostgreSQL.

Each test names the lock that makes the operation safe. The service's check is slowed down (a
short sleep after it) so the threads overlap inside the window a missing lock would leave open:
without the lock these tests fail on almost every trial.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from functools import wraps
from typing import Any
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from assignment.hashing import layer_bucket
from experiments import services
from experiments.models import Experiment, Layer, Metric, Variant

from .conftest import experiment_data

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TRIALS = 4


def race(*calls: Callable[[], Any]) -> list[tuple[str, Any]]:
    """Run the calls at once (one thread and database connection each): [("ok", result) | ("error", exc)]."""
    barrier = threading.Barrier(len(calls))
    results: list[tuple[str, Any]] = [("error", None)] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = ("ok", call())
        except Exception as exc:  # noqa: BLE001 - reported to the test
            results[i] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def slowed(name: str, seconds: float = 0.15):
    """Sleep after ``services.<name>`` returns: widens the gap between a check and its write."""
    original = getattr(services, name)

    @wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        time.sleep(seconds)
        return result

    return mock.patch.object(services, name, wrapper)


def ok(results) -> list:
    return [r for kind, r in results if kind == "ok"]


def refused(results, field: str) -> list:
    errors = [r for kind, r in results if kind == "error"]
    for e in errors:
        assert isinstance(e, ValidationError) and field in e.message_dict, repr(e)
    return errors


@pytest.fixture
def metric(transactional_db):
    return Metric.objects.create(key="purchase", name="Purchase", event="purchase")


def test_concurrent_starts_in_one_layer_get_disjoint_ranges(metric):
    """Lock: the layer row (start_experiment -> lock_layer) serialises range allocation."""
    for trial in range(TRIALS):
        layer = Layer.objects.create(key=f"layer-{trial}", name="L", holdout_percent=0)
        a = services.create_experiment(experiment_data(key=f"a-{trial}", layer=layer, layer_share=50))
        b = services.create_experiment(experiment_data(key=f"b-{trial}", layer=layer, layer_share=50))
        with slowed("_allocate_layer_range"):
            results = race(lambda a=a: services.start_experiment(a), lambda b=b: services.start_experiment(b))
        assert len(ok(results)) == 2, results
        a.refresh_from_db()
        b.refresh_from_db()
        ranges = sorted([(a.layer_bucket_start, a.layer_bucket_end), (b.layer_bucket_start, b.layer_bucket_end)])
        assert ranges == [(0, 5000), (5000, 10000)], f"trial {trial}: {ranges}"
        in_both = [
            u for u in (f"unit-{i}" for i in range(200))
            if a.layer_bucket_start <= layer_bucket(layer.salt, u) < a.layer_bucket_end
            and b.layer_bucket_start <= layer_bucket(layer.salt, u) < b.layer_bucket_end
        ]
        assert in_both == []


def test_concurrent_creates_cannot_overbook_a_layer(metric):
    """Lock: the layer row (create_experiment -> lock_layer) covers the read of the other shares."""
    for trial in range(TRIALS):
        layer = Layer.objects.create(key=f"layer-{trial}", name="L", holdout_percent=0)
        with slowed("validate_layer_share"):
            results = race(*[
                (lambda k=k, layer=layer: services.create_experiment(experiment_data(key=k, layer=layer, layer_share=60)))
                for k in (f"x-{trial}", f"y-{trial}")
            ])
        assert len(ok(results)) == 1, results
        assert len(refused(results, "layer_share")) == 1
        assert sum(e.layer_share for e in layer.experiments.all()) <= 100


def test_holdout_edit_against_a_share_edit(metric):
    """Lock: the layer row, taken by save_layer and by update_experiment (after the experiment row)."""
    for trial in range(TRIALS):
        layer = Layer.objects.create(key=f"layer-{trial}", name="L", holdout_percent=0)
        exp = services.create_experiment(experiment_data(key=f"e-{trial}", layer=layer, layer_share=40))
        with slowed("validate_layer_share"), slowed("validate_layer_changes"):
            results = race(
                lambda exp=exp: services.update_experiment(exp, {"layer_share": 80}),
                lambda layer=layer: services.save_layer(Layer.objects.get(pk=layer.pk), {"holdout_percent": 50}),
            )
        assert len(ok(results)) == 1, results
        layer.refresh_from_db()
        exp.refresh_from_db()
        assert layer.holdout_percent + exp.layer_share <= 100


def test_concurrent_creates_of_one_key_one_wins_the_rest_are_told_the_key(metric):
    """The unique index on key decides; the losers get a ValidationError naming ``key``, not a 503."""
    results = race(*[(lambda: services.create_experiment(experiment_data(key="same"))) for _ in range(10)])
    assert len(ok(results)) == 1
    assert len(refused(results, "key")) == 9
    assert Experiment.objects.filter(key="same").count() == 1


@pytest.mark.parametrize("path,body", [
    ("/api/v1/experiments", None),
    ("/api/v1/metrics", {"key": "same", "name": "M", "event": "buy"}),
    ("/api/v1/layers", {"key": "same", "name": "L"}),
])
def test_twenty_concurrent_api_creates_of_one_key(metric, api_key, path, body):
    """Issue 10 #10: the losers answered 503 "retry later"; now a 400 naming ``key``."""
    from rest_framework.test import APIClient

    token = api_key("admin")
    payload = body or {**experiment_data(key="same"), "metrics": [{"metric": "purchase", "role": "primary"}]}

    def post():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {token}")
        response = client.post(path, payload, format="json")
        return response.status_code, response.json()

    with slowed("_full_clean", 0.05), slowed("validate_metric", 0.05), slowed("validate_layer_changes", 0.05):
        results = race(*[post for _ in range(20)])
    codes = sorted(code for kind, (code, _) in results if kind == "ok")
    assert codes.count(201) == 1, results
    assert all(code == 400 for code in codes if code != 201), codes
    assert all("key" in body for kind, (code, body) in results if code == 400)


@pytest.mark.parametrize("name", ["start", "pause", "resume", "complete", "archive"])
def test_twin_transitions_happen_once(metric, name):
    """Lock: the experiment row (select_for_update in every transition) makes the status check stick."""
    for trial in range(TRIALS):
        exp = services.create_experiment(experiment_data(key=f"t-{trial}"))
        before = {"start": [], "pause": ["start"], "resume": ["start", "pause"], "complete": ["start"],
                  "archive": ["start", "complete"]}[name]
        for step in before:
            exp = services.TRANSITION_FUNCTIONS[step](exp)
        with slowed("_check_transition"):
            results = race(*[(lambda e=exp: services.TRANSITION_FUNCTIONS[name](e)) for _ in range(2)])
        assert len(ok(results)) == 1, results
        assert len(refused(results, "status")) == 1
        target = services.ACTION_TARGETS[name]
        assert exp.history.filter(status=target).count() == (2 if name == "resume" else 1)


def test_complete_twins_ship_one_variant(metric):
    """Lock: the experiment row. Two people shipping different variants: one wins, one is told why."""
    for trial in range(TRIALS):
        exp = services.start_experiment(services.create_experiment(experiment_data(key=f"c-{trial}")))
        with slowed("_check_transition"):
            results = race(
                lambda e=exp: services.complete_experiment(e, shipped_variant="control"),
                lambda e=exp: services.complete_experiment(e, shipped_variant="green"),
            )
        assert len(ok(results)) == 1
        exp.refresh_from_db()
        assert exp.shipped_variant.key == ok(results)[0].shipped_variant.key


def test_pause_against_complete(metric):
    """Lock: the experiment row. Whichever goes second sees the first's status."""
    for trial in range(TRIALS):
        exp = services.start_experiment(services.create_experiment(experiment_data(key=f"p-{trial}")))
        with slowed("_check_transition"):
            results = race(lambda e=exp: services.pause_experiment(e), lambda e=exp: services.complete_experiment(e))
        exp.refresh_from_db()
        assert exp.status == Experiment.Status.COMPLETED
        if len(ok(results)) == 1:  # complete first: pause refused
            assert refused(results, "status")


def test_variant_edit_against_start(metric):
    """Lock: the experiment row, taken by update_experiment and start_experiment alike.

    Either the edit lands first (and the start validates the new variants) or the start does (and
    the edit is refused): never a running experiment whose variants changed after it started.
    """
    new = [{"key": "control", "weight": 20, "is_control": True}, {"key": "green", "weight": 80}]
    for trial in range(TRIALS):
        exp = services.create_experiment(experiment_data(key=f"v-{trial}"))
        with slowed("validate_variants"):
            results = race(
                lambda e=exp: services.update_experiment(e, {"variants": new}),
                lambda e=exp: services.start_experiment(e),
            )
        exp.refresh_from_db()
        assert exp.status == Experiment.Status.RUNNING
        changed_after = Variant.history.filter(experiment_id=exp.pk, history_date__gt=exp.started_at)
        assert not changed_after.exists(), results
        if results[0][0] == "error":
            assert "variants" in results[0][1].message_dict
        else:
            assert sorted(exp.variants.values_list("weight", flat=True)) == [Decimal("20"), Decimal("80")]


def test_metric_edit_against_start(metric):
    """Lock: the experiment row. A start never goes through while the primary metric is being removed."""
    Metric.objects.create(key="other", name="Other", event="other")
    for trial in range(TRIALS):
        exp = services.create_experiment(experiment_data(key=f"m-{trial}"))
        with slowed("validate_metrics"):
            race(
                lambda e=exp: services.update_experiment(e, {"metrics": [{"metric": "other", "role": "secondary"}]}),
                lambda e=exp: services.start_experiment(e),
            )
        exp.refresh_from_db()
        if exp.status == Experiment.Status.RUNNING:
            assert exp.experiment_metrics.filter(role="primary").exists()


def test_admin_save_against_start_keeps_the_start(metric):
    """Lock: the admin locks the experiment row on POST (LockOnPostMixin.get_object) before its form
    reads the status; otherwise its save writes the stale "draft" back over a concurrent start."""
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.create_superuser("pm", "pm@example.com", "pw")
    for trial in range(TRIALS):
        exp = services.create_experiment(experiment_data(key=f"a-{trial}"))
        client = Client()
        client.force_login(user)
        page = client.get(f"/admin/experiments/experiment/{exp.pk}/change/")
        form = page.context["adminform"].form
        data = {k: ("" if v is None else v) for k, v in form.initial.items() if k in form.fields}
        data.update({"owner": "", "layer": "", "layer_share": "", "cuped": "on", "name": "Renamed"})
        for fs in page.context["inline_admin_formsets"]:
            mgmt = fs.formset.management_form
            data.update({mgmt.add_prefix(k): v for k, v in mgmt.initial.items()})
            for f in fs.formset.forms:
                for name, field in f.fields.items():
                    value = f.initial.get(name, field.initial)
                    if name in ("payload", "values"):
                        value = json.dumps(value)
                    if isinstance(value, bool):
                        value = "on" if value else ""
                    data[f.add_prefix(name)] = "" if value is None else getattr(value, "pk", value)
        with slowed("validate_changes", 0.3):
            results = race(
                lambda c=client, e=exp, d=data: c.post(f"/admin/experiments/experiment/{e.pk}/change/", d).status_code,
                lambda e=exp: (time.sleep(0.1), services.start_experiment(e))[1],
            )
        assert results[1][0] == "ok" and results[0] == ("ok", 302), results
        exp.refresh_from_db()
        assert exp.status == Experiment.Status.RUNNING and exp.started_at is not None


def test_concurrent_renames_to_one_key(metric):
    """The unique index decides between two drafts renamed to the same key: the loser is told ``key``."""
    a = services.create_experiment(experiment_data(key="first"))
    b = services.create_experiment(experiment_data(key="second"))
    with slowed("_full_clean"):
        results = race(lambda: services.update_experiment(a, {"key": "taken"}),
                       lambda: services.update_experiment(b, {"key": "taken"}))
    assert len(ok(results)) == 1 and len(refused(results, "key")) == 1
