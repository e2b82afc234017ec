"""Races on PostgreSQL: the row locks in experiments.approvals make each check-then-act safe.

Two approvers of one request serialise on the experiment row (then the request row): the second
sees the request decided. Two requests for one action serialise on the experiment row, and the
partial unique index would refuse a second pending row even without it.
"""
from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from access.roles import ROLE_NAMES
from experiments import approvals, services
from experiments.models import ApprovalRequest, Experiment, Metric

pytestmark = [pytest.mark.postgres]


def _user(name: str, role: str) -> User:
    user = User.objects.create(username=name, is_staff=True)
    user.groups.add(Group.objects.get(name=ROLE_NAMES[role]))
    return user


@pytest.fixture
def experiment(transactional_db, settings):
    settings.REQUIRE_APPROVAL = True
    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    return services.create_experiment({
        "key": "race-exp", "name": "race", "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    })


def _race(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except (ValidationError, PermissionDenied) as e:
            results[i] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_two_approvers_start_the_experiment_once(experiment):
    approval = approvals.request_approval(experiment, "start", user=_user("pat", "pm"))
    approvers = [_user(f"a{i}", "analyst") for i in range(4)]
    results = _race(4, lambda i: approvals.approve(approval.pk, user=approvers[i]))
    wins = [r for r in results if isinstance(r, ApprovalRequest)]
    losses = [r for r in results if isinstance(r, ValidationError)]
    assert len(wins) == 1 and len(losses) == 3, results
    assert all("already approved" in str(e) for e in losses)
    assert Experiment.objects.get(pk=experiment.pk).status == "running"
    assert experiment.history.filter(history_change_reason__startswith="started").count() == 1


def test_concurrent_requests_leave_one_pending(experiment):
    people = [_user(f"p{i}", "pm") for i in range(4)]
    results = _race(4, lambda i: approvals.request_approval(experiment, "start", user=people[i]))
    assert sum(isinstance(r, ApprovalRequest) for r in results) == 1, results
    assert ApprovalRequest.objects.filter(status="pending").count() == 1


def test_approve_racing_an_edit_never_starts_an_unreviewed_definition(experiment):
    approval = approvals.request_approval(experiment, "start", user=_user("pat", "pm"))
    sam = _user("sam", "analyst")

    def act(i: int):
        if i == 0:
            return approvals.approve(approval.pk, user=sam)
        return services.update_experiment(Experiment.objects.get(pk=experiment.pk), {"traffic_allocation": 10})

    results = _race(2, act)
    final = Experiment.objects.get(pk=experiment.pk)
    approval.refresh_from_db()
    if isinstance(results[0], ApprovalRequest):  # approval first: it started what was reviewed (100 %)
        assert final.status == "running" and approval.status == "approved"
        assert final.history.filter(history_change_reason__startswith="started", traffic_allocation=100).exists()
    else:  # edit first: the request was stale
        assert final.status == "draft" and approval.status == "cancelled"
