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


def test_the_worker_retries_a_failing_endpoint_with_backoff(workers):
    from automation import receivers

    experiment = make_experiment("e2e-retry")
    with Receiver([500, 503]) as hook:
        AlertSubscription.objects.create(channel="webhook", target=hook.url)
        workers(pool="solo", ALERT_RETRY_BASE_SECONDS="0.5")
        started = time.monotonic()
        payload = {"srm": {"checked": True, "passed": False, "message": "split is off"}, "metrics": []}
        assert receivers.evaluate(experiment, payload) == ["srm"]
        wait_for(lambda: Delivery.objects.filter(status="delivered").exists(), timeout=60, what="the delivery")
        elapsed = time.monotonic() - started
        assert len(hook.requests) == 3
    delivery = Delivery.objects.get()
    assert (delivery.attempts, delivery.response_code) == (3, 200)
    assert elapsed >= 1.5  # waited 0.5 s, then 1 s (exponential), before the third attempt
    bodies = {body for _, body in hook.requests}
    assert len(bodies) == 1  # the same alert (same id) each time
