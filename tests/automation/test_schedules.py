"""Scheduled actions and ramps: due/skip, history reasons, never half-applied, twin runners."""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from automation import schedules
from automation.models import ScheduledAction
from automation.tasks import run_scheduled_actions
from experiments import services
from experiments.models import Experiment
from tests.analysis.reporting import make_experiment


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", password="x")


def _action(experiment, action, minutes=-1, value=None, user=None):
    return ScheduledAction.objects.create(experiment=experiment, action=action, value=value, created_by=user,
                                          run_at=timezone.now() + timedelta(minutes=minutes))


@pytest.mark.django_db
def test_a_ramp_runs_step_by_step_and_each_step_is_in_the_history(alice):
    experiment = make_experiment("ramp", traffic_allocation=10)
    now = timezone.now()
    schedules.schedule_ramp(experiment, [(now - timedelta(minutes=1), 50), (now + timedelta(days=2), 100)],
                            user=alice)
    assert run_scheduled_actions() == 1  # the second step is not due yet
    experiment.refresh_from_db()
    assert experiment.traffic_allocation == Decimal("50")
    assert experiment.history.first().history_change_reason == (
        "changed by automation: set_traffic 50.00% scheduled by alice")
    later = ScheduledAction.objects.get(value=100)
    assert later.status == "pending"
    assert schedules.run_due(now=now + timedelta(days=3)) == 1
    experiment.refresh_from_db()
    assert experiment.traffic_allocation == Decimal("100")
    assert list(ScheduledAction.objects.values_list("status", flat=True)) == ["done", "done"]


@pytest.mark.django_db
def test_a_ramp_must_grow():
    experiment = make_experiment("shrinkramp", traffic_allocation=10)
    now = timezone.now()
    with pytest.raises(ValidationError):
        schedules.schedule_ramp(experiment, [(now, 50), (now + timedelta(days=1), 20)])


@pytest.mark.django_db
def test_a_step_of_a_paused_experiment_is_skipped_with_its_reason(alice):
    experiment = make_experiment("paused-ramp", traffic_allocation=10)
    services.pause_experiment(experiment, actor="pm")
    step = _action(experiment, "set_traffic", value=50, user=alice)
    before = experiment.history.count()
    run_scheduled_actions()
    step.refresh_from_db()
    experiment.refresh_from_db()
    assert (step.status, step.reason) == ("skipped", "the experiment is paused")
    assert experiment.traffic_allocation == Decimal("10") and experiment.history.count() == before


@pytest.mark.django_db
def test_a_step_that_would_shrink_traffic_is_skipped():
    experiment = make_experiment("shrink", traffic_allocation=60)
    step = _action(experiment, "set_traffic", value=50)
    run_scheduled_actions()
    step.refresh_from_db()
    assert step.status == "skipped" and "would shrink from 60.00% to 50.00%" in step.reason


@pytest.mark.django_db
def test_a_step_scheduled_before_a_new_phase_is_skipped(alice):
    from experiments.phases import start_new_phase

    experiment = make_experiment("rephased", traffic_allocation=10)
    step = _action(experiment, "set_traffic", value=50, user=alice)
    start_new_phase(experiment, {}, rerandomize=True, reason="fix the bucketing", actor="pm")
    run_scheduled_actions()
    step.refresh_from_db()
    experiment.refresh_from_db()
    assert step.status == "skipped" and "the plan changed: phase 2 began" in step.reason
    assert experiment.traffic_allocation == Decimal("10")


@pytest.mark.django_db
def test_start_pause_resume_complete_on_schedule(alice):
    experiment = make_experiment("timed", start=False)
    _action(experiment, "start", minutes=-4, user=alice)
    _action(experiment, "pause", minutes=-3, user=alice)
    _action(experiment, "resume", minutes=-2, user=alice)
    _action(experiment, "complete", minutes=-1, user=alice)
    assert run_scheduled_actions() == 4
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.COMPLETED
    reasons = list(experiment.history.order_by("history_date").values_list("history_change_reason", flat=True))
    assert reasons[-4:] == [
        "started by automation: start scheduled by alice", "paused by automation: pause scheduled by alice",
        "resumed by automation: resume scheduled by alice", "completed by automation: complete scheduled by alice",
    ]


@pytest.mark.django_db
def test_a_refused_change_is_skipped_and_leaves_nothing_behind(settings):
    settings.REQUIRE_APPROVAL = True  # a scheduled start has no second person's approval
    experiment = make_experiment("needs-approval", start=False)
    step = _action(experiment, "start")
    run_scheduled_actions()
    step.refresh_from_db()
    experiment.refresh_from_db()
    assert step.status == "skipped" and "approval" in step.reason
    assert experiment.status == Experiment.Status.DRAFT and experiment.started_at is None
    assert run_scheduled_actions() == 0  # never tried again


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runners_at_once_run_every_action_exactly_once(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    experiments = [make_experiment(f"twin-{i}", traffic_allocation=10) for i in range(6)]
    for e in experiments:
        _action(e, "set_traffic", value=40)
    real = schedules.execute

    def slow(action):  # hold each row lock long enough for the other runner to reach it
        time.sleep(0.05)
        real(action)

    monkeypatch.setattr(schedules, "execute", slow)
    counts, barrier = [], threading.Barrier(2)

    def runner():
        try:
            barrier.wait()
            counts.append(schedules.run_due())
        finally:
            connection.close()

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(counts) == 6 and all(c > 0 for c in counts)  # both worked, neither ran a row twice
    assert set(ScheduledAction.objects.values_list("status", flat=True)) == {"done"}
    for e in experiments:
        assert e.history.filter(history_change_reason__contains="scheduled by").count() == 1


@pytest.mark.django_db
def test_run_automation_command_runs_due_actions_once():
    from io import StringIO

    from django.core.management import call_command

    experiment = make_experiment("cmd", traffic_allocation=10)
    _action(experiment, "set_traffic", value=30)
    out = StringIO()
    call_command("run_automation", stdout=out)
    assert out.getvalue().strip() == "1 scheduled action(s) run; 0 overdue alert(s) fired"
    experiment.refresh_from_db()
    assert experiment.traffic_allocation == Decimal("30")
