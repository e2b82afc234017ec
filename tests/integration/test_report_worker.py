"""The report pipeline with its real parts: PostgreSQL, Redis and ``celery worker`` processes.

1. A refresh through the API is computed by a worker and its snapshot appears.
2. A worker killed (SIGKILL) inside the snapshot transaction leaves nothing behind; after a
   restart the broker redelivers the task (acks_late) and it completes, exactly once.
3. Two refreshes at once produce one computation (the pending-task check in the API, and the
   lock in the task when two workers really run at the same time).
4. After a worker is killed mid-report, its task stops reading STARTED within the lock's expiry
   (heartbeat gone) and a refresh is computed at once by another worker, without waiting for
   the broker to redeliver the dead worker's message.
"""
from __future__ import annotations

import pytest
from celery import states
from rest_framework.test import APIClient

from access.services import create_api_key
from analysis import tasks
from analysis.models import ReportSnapshot
from tests.analysis.reporting import make_experiment, populate

from .conftest import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery,
              pytest.mark.django_db(transaction=True)]


@pytest.fixture
def analyst() -> APIClient:
    _, raw = create_api_key("integration", "analyst")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


@pytest.fixture
def experiment():
    experiment = make_experiment("worker-exp")
    populate(experiment, units=600, lift=0.3)
    return experiment


def _state(task_id: str) -> str:
    return tasks.compute_report.AsyncResult(task_id).state


def test_refresh_is_computed_by_the_worker(workers, analyst, experiment):
    workers(pool="solo")
    r = analyst.post("/api/v1/experiments/worker-exp/results/refresh")
    assert r.status_code == 202
    task_id = r.json()["task_id"]
    status = wait_for(lambda: (s := analyst.get(f"/api/v1/tasks/{task_id}").json())["ready"] and s,
                      timeout=30, what="the report task")
    assert status["state"] == states.SUCCESS and status["outcome"] == "computed"
    snapshot = ReportSnapshot.objects.get(task_id=task_id)
    assert status["snapshot_id"] == snapshot.pk
    body = analyst.get("/api/v1/experiments/worker-exp/results").json()
    assert body["snapshot_id"] == snapshot.pk and body["metrics"][0]["metric"] == "purchase"
    assert sum(body["srm"]["counts"].values()) == 600


def test_killed_worker_leaves_nothing_and_the_task_completes_after_restart(workers, analyst, experiment):
    doomed = workers(pool="solo", REPORT_TEST_DELAY_SECONDS="120", REPORT_LOCK_SECONDS="3")
    task_id = analyst.post("/api/v1/experiments/worker-exp/results/refresh").json()["task_id"]
    # The compute service logs this line after inserting the row, inside the open transaction.
    wait_for(lambda: "sleeping inside the snapshot transaction" in doomed.log(), timeout=30,
             what="the worker to be mid-write")
    assert _state(task_id) == states.STARTED
    assert not ReportSnapshot.objects.exists()  # inserted but uncommitted: invisible

    doomed.kill()
    assert not ReportSnapshot.objects.exists()  # the dead connection's transaction rolled back

    # A new worker (no delay) gets the unacknowledged message back and finishes the job. A short
    # visibility timeout makes Redis hand back the dead worker's message at once.
    workers(pool="solo", CELERY_VISIBILITY_TIMEOUT="1", REPORT_LOCK_SECONDS="3")
    wait_for(lambda: _state(task_id) == states.SUCCESS, timeout=40, what="the redelivered task")
    snapshots = list(ReportSnapshot.objects.all())
    assert len(snapshots) == 1 and snapshots[0].task_id == task_id
    assert snapshots[0].payload["decision"]["recommendation"]
    assert tasks.compute_report.AsyncResult(task_id).result["outcome"] == "computed"


def test_two_refreshes_at_once_compute_once(workers, analyst, experiment):
    workers(pool="prefork", concurrency=2, REPORT_TEST_DELAY_SECONDS="3")

    # Through the API: the second request joins the pending computation.
    first = analyst.post("/api/v1/experiments/worker-exp/results/refresh").json()
    second = analyst.post("/api/v1/experiments/worker-exp/results/refresh").json()
    assert second["task_id"] == first["task_id"] and second["deduplicated"] is True
    wait_for(lambda: _state(first["task_id"]) == states.SUCCESS, timeout=40, what="the shared task")
    assert ReportSnapshot.objects.count() == 1

    # Two tasks really running at once in two worker processes: the lock lets one compute.
    a = tasks.compute_report.apply_async(args=["worker-exp"])
    b = tasks.compute_report.apply_async(args=["worker-exp"])
    wait_for(lambda: a.ready() and b.ready(), timeout=40, what="both tasks")
    outcomes = sorted([a.result["outcome"], b.result["outcome"]])
    assert outcomes == ["computed", "skipped"], outcomes
    skipped = a.result if a.result["outcome"] == "skipped" else b.result
    assert skipped["running_task_id"] in (a.id, b.id)
    assert ReportSnapshot.objects.count() == 2


def test_a_refresh_after_a_worker_death_is_computed_at_once(workers, analyst, experiment):
    import time

    doomed = workers(pool="solo", REPORT_TEST_DELAY_SECONDS="120", REPORT_LOCK_SECONDS="2")
    task_id = analyst.post("/api/v1/experiments/worker-exp/results/refresh").json()["task_id"]
    wait_for(lambda: "sleeping inside the snapshot transaction" in doomed.log(), timeout=30,
             what="the worker to be mid-write")
    assert analyst.get(f"/api/v1/tasks/{task_id}").json()["state"] == states.STARTED
    # While it is alive (heartbeat), a refresh joins it.
    assert analyst.post("/api/v1/experiments/worker-exp/results/refresh").json()["task_id"] == task_id
    doomed.kill()
    killed_at = time.monotonic()
    workers(pool="solo")  # the default visibility timeout: no redelivery during this test

    status = wait_for(lambda: (s := analyst.get(f"/api/v1/tasks/{task_id}").json())["state"] != states.STARTED
                      and s, timeout=15, what="the dead task to stop reading STARTED")
    assert status["state"] == states.FAILURE and status["ready"] and "worker" in status["error"]
    fresh = analyst.post("/api/v1/experiments/worker-exp/results/refresh").json()
    assert fresh["task_id"] != task_id and fresh["deduplicated"] is False
    wait_for(lambda: _state(fresh["task_id"]) == states.SUCCESS, timeout=40, what="the new computation")
    elapsed = time.monotonic() - killed_at
    assert list(ReportSnapshot.objects.values_list("task_id", flat=True)) == [fresh["task_id"]]
    assert analyst.get(f"/api/v1/tasks/{task_id}").json()["state"] == states.FAILURE  # not STARTED again
    print(f"\nworker killed mid-report: new report computed {elapsed:.1f} s later (lock expiry 2 s)")


def test_the_defaults_recover_from_a_dead_worker_within_two_minutes():
    from django.conf import settings

    assert tasks._lock_seconds() <= 60  # a refresh after a worker death: computed within a minute
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] <= 120  # redelivery
