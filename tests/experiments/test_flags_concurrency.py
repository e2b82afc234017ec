"""Flags and audiences raced on PostgreSQL: twin creates, rule edits, audience edit vs start."""
from __future__ import annotations

import time
from unittest import mock

import pytest

from experiments import audiences, flags, services
from experiments.models import Audience, Flag, FlagRule

from .conftest import experiment_data
from .test_concurrency import ok, race, refused

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_twin_flag_creates_one_wins_the_other_is_told_the_key(transactional_db):
    results = race(*[(lambda: flags.create_flag({"key": "same", "name": "s"})) for _ in range(6)])
    assert len(ok(results)) == 1 and len(refused(results, "key")) == 5
    assert Flag.objects.filter(key="same").count() == 1


def test_twin_audience_creates_one_wins_the_other_is_told_the_key(transactional_db):
    results = race(*[(lambda: audiences.save_audience(Audience(), {"key": "same", "name": "s"})) for _ in range(6)])
    assert len(ok(results)) == 1 and len(refused(results, "key")) == 5


def test_concurrent_rule_lists_are_serialised_by_the_flag_lock(transactional_db):
    flag = flags.create_flag({"key": "f", "name": "f"})
    results = race(*[
        (lambda p=p: flags.set_environment(flag, "production", rules=[{"type": "rollout", "value": True, "percent": p}]))
        for p in (10, 20, 30, 40)
    ])
    assert len(ok(results)) == 4
    assert FlagRule.objects.filter(flag=flag).count() == 1  # each replaced the whole list in turn


def test_audience_edit_against_an_experiment_start(transactional_db):
    """Lock: the audience edit locks the experiments using it (select_for_update), so a start
    committed meanwhile is seen: either the edit lands before the start, or it is refused."""
    from experiments.models import Metric

    Metric.objects.create(key="purchase", name="Purchase", event="purchase")
    original = audiences.flags_using

    def slow_flags_using(a):  # widens the gap between the check and the write
        time.sleep(0.15)
        return original(a)

    for trial in range(3):
        audience = audiences.save_audience(Audience(), {"key": f"a-{trial}", "name": "a", "conditions": []})
        experiment = services.create_experiment(experiment_data(key=f"e-{trial}"))
        audiences.set_experiment_audiences(experiment, [audience.key])
        with mock.patch.object(audiences, "flags_using", slow_flags_using):
            results = race(
                lambda audience=audience: audiences.save_audience(
                    Audience.objects.get(pk=audience.pk),
                    {"conditions": [{"attribute": "country", "operator": "in", "values": ["DE"]}]}),
                lambda experiment=experiment: services.start_experiment(experiment),
            )
        edit, start = results
        assert start[0] == "ok", results
        if edit[0] == "error":
            assert "conditions" in edit[1].message_dict
        else:  # the edit committed first; the experiment started with the new conditions
            experiment.refresh_from_db()
            assert experiment.started_at > Audience.history.filter(id=audience.pk).latest("history_date").history_date
