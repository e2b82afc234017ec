"""The Celery side of the pipeline, in-process: idempotency, the lock, retries, beat, enqueueing.

The real worker, broker and kill tests are in tests/integration.
"""
from __future__ import annotations

from datetime import timedelta

import kombu.exceptions
import pytest
from celery import states
from django.core.cache import cache
from django.db import OperationalError

from analysis import reports, tasks
from analysis.models import ReportSnapshot
from config.celery import app

from .reporting import make_experiment, populate

pytestmark = pytest.mark.django_db


@pytest.fixture
def production_mode():
    """Tasks go through a broker (not run in process), as with Redis in production."""
    old = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = old


@pytest.fixture
def not_eager(production_mode, monkeypatch):
    """Production mode with apply_async captured instead of sent."""
    sent = []

    def fake_apply_async(args=None, kwargs=None, task_id=None, **options):
        sent.append((args, task_id))
        return tasks.compute_report.AsyncResult(task_id)

    monkeypatch.setattr(tasks.compute_report, "apply_async", fake_apply_async)
    return sent


def test_task_options_match_the_guarantees():
    task = tasks.compute_report
    assert task.acks_late is True and task.reject_on_worker_lost is True
    assert OperationalError in task.autoretry_for
    assert kombu.exceptions.OperationalError in task.autoretry_for
    assert task.retry_backoff and task.max_retries >= 3


def test_beat_schedule_names_registered_tasks(settings):
    app.loader.import_default_modules()  # what a worker does at start (autodiscovery)
    registered = set(app.tasks)
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in registered
    refresh = settings.CELERY_BEAT_SCHEDULE["recompute-running-reports"]
    assert refresh["schedule"] == timedelta(minutes=settings.REPORT_REFRESH_MINUTES)


def test_compute_task_is_idempotent_per_task_id():
    experiment = make_experiment()
    populate(experiment, units=300)
    first = tasks.compute_report.apply(args=["checkout"], task_id="same-id").get()
    assert first["outcome"] == "computed"
    again = tasks.compute_report.apply(args=["checkout"], task_id="same-id").get()
    assert again == {"outcome": "already_computed", "experiment": "checkout", "snapshot_id": first["snapshot_id"]}
    assert ReportSnapshot.objects.count() == 1
    assert cache.get(tasks.lock_key(experiment.pk)) is None  # released


def test_a_second_run_while_the_lock_is_held_does_nothing():
    experiment = make_experiment()
    assert tasks.acquire_lock(tasks.lock_key(experiment.pk), "other-task")
    result = tasks.compute_report.apply(args=["checkout"], task_id="mine").get()
    assert result["outcome"] == "skipped" and result["running_task_id"] == "other-task"
    assert not ReportSnapshot.objects.exists()
    assert cache.get(tasks.lock_key(experiment.pk)) == "other-task"  # not stolen, not released


def test_a_redelivered_task_takes_over_its_own_lock():
    """A worker killed mid-report leaves its lock; the same task id redelivered may finish."""
    experiment = make_experiment()
    assert tasks.acquire_lock(tasks.lock_key(experiment.pk), "task-42")
    result = tasks.compute_report.apply(args=["checkout"], task_id="task-42").get()
    assert result["outcome"] == "computed"
    assert cache.get(tasks.lock_key(experiment.pk)) is None


def test_lock_release_checks_the_token():
    assert tasks.acquire_lock("analysis:test-lock", "a", 60)
    assert not tasks.acquire_lock("analysis:test-lock", "b", 60)
    assert tasks.release_lock("analysis:test-lock", "b") is False
    assert cache.get("analysis:test-lock") == "a"
    assert tasks.release_lock("analysis:test-lock", "a") is True
    assert tasks.acquire_lock("analysis:test-lock", "b", 60)


def test_lock_is_released_when_the_computation_fails(monkeypatch):
    experiment = make_experiment()

    def fail(*args, **kwargs):
        raise reports.ReportError("broken definition")

    monkeypatch.setattr(reports, "compute_report", fail)
    with pytest.raises(reports.ReportError):
        tasks.compute_report.apply(args=["checkout"], task_id="t").get()
    assert cache.get(tasks.lock_key(experiment.pk)) is None


def test_database_errors_are_retried(monkeypatch):
    experiment = make_experiment()
    real = reports.compute_report
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(reports, "compute_report", flaky)
    # throw=False: run the retry loop in process, as a worker would (eager mode propagates).
    result = tasks.compute_report.apply(args=["checkout"], task_id="retry-me", throw=False)
    assert result.state == states.SUCCESS and result.get()["outcome"] == "computed"
    assert len(calls) == 2
    assert ReportSnapshot.objects.filter(experiment=experiment, task_id="retry-me").count() == 1


def test_unknown_experiment_is_not_an_error():
    assert tasks.compute_report.apply(args=["nope"]).get()["outcome"] == "missing"


def test_beat_job_refreshes_running_experiments_only(monkeypatch):
    flushed = []
    monkeypatch.setattr("assignment.services.flush_exposures", lambda: flushed.append(1) or 0)
    running = make_experiment("running-one")
    draft = make_experiment("draft-one", start=False)
    assert tasks.refresh_running_experiments.apply().get() == 1
    assert ReportSnapshot.objects.filter(experiment=running).count() == 1
    assert not ReportSnapshot.objects.filter(experiment=draft).exists()
    assert flushed  # before aggregating


def test_request_refresh_eager_runs_and_records_success():
    experiment = make_experiment()
    ticket = tasks.request_refresh(experiment)
    assert ticket.state == states.SUCCESS and not ticket.deduplicated
    status = tasks.task_status(ticket.task_id)
    snapshot = ReportSnapshot.objects.get(task_id=ticket.task_id)
    assert status == {"task_id": ticket.task_id, "state": "SUCCESS", "ready": True, "experiment": "checkout",
                      "outcome": "computed", "snapshot_id": snapshot.pk, "error": None}
    assert cache.get(tasks.pending_key(experiment.pk)) is None
    # A second refresh computes again (the first is done).
    assert tasks.request_refresh(experiment).task_id != ticket.task_id


def test_request_refresh_eager_failure_is_reported(monkeypatch):
    experiment = make_experiment()
    experiment.variants.update(is_control=False)
    ticket = tasks.request_refresh(experiment)
    assert ticket.state == states.FAILURE
    status = tasks.task_status(ticket.task_id)
    assert status["state"] == "FAILURE" and "no control" in status["error"]
    assert cache.get(tasks.pending_key(experiment.pk)) is None


def test_refreshes_while_one_is_pending_share_its_task(not_eager):
    experiment = make_experiment()
    first = tasks.request_refresh(experiment)
    second = tasks.request_refresh(experiment)
    assert second.task_id == first.task_id and second.deduplicated and not first.deduplicated
    assert len(not_eager) == 1
    assert tasks.task_status(first.task_id)["state"] == states.PENDING
    other = make_experiment("other")
    assert tasks.request_refresh(other).task_id != first.task_id  # per experiment


def test_broker_down_answers_queue_unavailable(production_mode, monkeypatch):
    experiment = make_experiment()

    def down(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Error 111 connecting to redis")

    monkeypatch.setattr(tasks.compute_report, "apply_async", down)
    with pytest.raises(tasks.QueueUnavailable):
        tasks.request_refresh(experiment)
    assert cache.get(tasks.pending_key(experiment.pk)) is None  # the next attempt can enqueue


def test_task_status_of_unknown_ids(not_eager):
    assert tasks.task_status("0f5c6f6e-0000-4000-8000-000000000000") is None
    assert tasks.task_status("../../etc") is None
    assert tasks.task_status("x" * 65) is None
    assert tasks.task_status("abc\n") is None


def test_the_heartbeat_keeps_a_running_lock_and_a_dead_one_expires(settings):
    """A report's lock is short (REPORT_LOCK_SECONDS) and renewed while it runs; a killed worker
    stops renewing it, so it is free again within that time."""
    import time

    settings.REPORT_LOCK_SECONDS = 1
    assert tasks.acquire_lock("analysis:hb", "run-1")
    with tasks.Heartbeat("run-1", ["analysis:hb"]):
        time.sleep(1.6)
        assert cache.get("analysis:hb") == "run-1"
    assert tasks.renew_lock("analysis:hb", "someone-else") is False
    time.sleep(1.3)
    assert cache.get("analysis:hb") is None
