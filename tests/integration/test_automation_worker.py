"""End to end with a real worker: a guardrail breach -> the report -> paused -> one signed alert."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from analysis import tasks
from automation.models import AlertSubscription, Delivery, ExperimentAutomation
from experiments.models import Experiment
from tests.analysis.reporting import make_experiment, populate
from tests.automation.receiver import Receiver

from .conftest import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.celery,
              pytest.mark.django_db(transaction=True)]


def test_guardrail_breach_pauses_a_guarded_experiment_and_sends_one_signed_alert(workers):
    experiment = make_experiment("e2e-guard")
    ExperimentAutomation.objects.create(experiment=experiment, guarded=True)
    populate(experiment, units=3000, guardrail_rate=0.1, guardrail_lift=4.0)
    with Receiver() as hook:
        sub = AlertSubscription.objects.create(experiment=experiment, channel="webhook", target=hook.url)
        workers(pool="solo")
        tasks.refresh_running_experiments()  # what beat runs every REPORT_REFRESH_MINUTES
        wait_for(lambda: hook.requests, timeout=60, what="the alert")
        experiment.refresh_from_db()
        assert experiment.status == Experiment.Status.PAUSED
        assert experiment.history.first().history_change_reason == "paused by automation: guardrail refund breached"
        # A second report of the same breach sends nothing more.
        ticket = tasks.request_refresh(experiment)
        wait_for(lambda: tasks.task_state(ticket.task_id) == "SUCCESS", timeout=60, what="the second report")
        time.sleep(1)
        (headers, body), = hook.requests
    t, v1 = (part.split("=", 1)[1] for part in headers["X-Signature"].split(","))
    assert v1 == hmac.new(sub.secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert abs(time.time() - int(t)) < 120
    alert = json.loads(body)
    assert (alert["condition"], alert["action"], alert["experiment"]) == ("guardrail:refund:green", "paused", "e2e-guard")
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 1, 200)
