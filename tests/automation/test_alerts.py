"""Alerts: signing, channels, retries, once-per-condition, guards, report-failure and overdue."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from analysis import reports, tasks
from analysis.models import ReportSnapshot
from automation import channels, conditions, receivers, signing
from automation.models import AlertState, AlertSubscription, Delivery, ExperimentAutomation
from automation.overdue import check_overdue
from automation.tasks import backoff_seconds
from experiments import services
from experiments.models import Experiment
from tests.analysis.reporting import make_experiment, populate

pytestmark = pytest.mark.django_db


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run on_commit callbacks (the delivery tasks) as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _breach(experiment, units: int = 3000) -> None:
    """Seeded data whose guardrail (refund rate, margin +100 %) is clearly breached by green."""
    populate(experiment, units=units, guardrail_rate=0.1, guardrail_lift=4.0)


def _payload(srm_passed: bool = True, breached: bool = False) -> dict:
    return {
        "srm": {"checked": True, "passed": srm_passed, "message": "split is off"},
        "metrics": [{"metric": "refund", "role": "guardrail", "variants": [
            {"variant": "control", "is_control": True},
            {"variant": "green", "is_control": False, "guardrail_alert": breached,
             "non_inferiority": {"status": "breached" if breached else "holds"}},
        ]}],
        "decision": {"recommendation": "keep_running"},
    }


# --- signing --------------------------------------------------------------------------------------

def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"a":1}'
    header = signing.sign("s3cret", body, timestamp=1700000000)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert signing.verify("s3cret", header, body, now=1700000000 + 10)


def test_verify_refuses_tampering_wrong_secret_and_replays():
    body = b'{"a":1}'
    header = signing.sign("s3cret", body, timestamp=1700000000)
    assert not signing.verify("s3cret", header, b'{"a":2}', now=1700000000)
    assert not signing.verify("other", header, body, now=1700000000)
    assert not signing.verify("s3cret", header, body, now=1700000000 + 301)  # outside the replay window
    assert not signing.verify("s3cret", "garbage", body)


# --- channels -------------------------------------------------------------------------------------

def test_non_http_targets_are_refused():
    for url in ("file:///etc/passwd", "gopher://x", "ftp://example.com/", "http://", "example.com"):
        with pytest.raises(ValidationError):
            channels.validate_target("webhook", url)
    sub = AlertSubscription(channel="slack", target="file:///etc/passwd")
    with pytest.raises(ValidationError):
        sub.full_clean()
    with pytest.raises(ValidationError):
        AlertSubscription(channel="email", target="not-an-address").full_clean()


def test_each_subscription_has_its_own_secret():
    a = AlertSubscription.objects.create(channel="webhook", target="http://a.example/")
    b = AlertSubscription.objects.create(channel="webhook", target="http://b.example/")
    assert len(a.secret) == 64 and a.secret != b.secret


def test_webhook_retries_with_backoff_until_it_is_delivered(commit, receiver, settings):
    experiment = make_experiment("ret")
    hook = receiver([500, 200])
    sub = AlertSubscription.objects.create(experiment=experiment, channel="webhook", target=hook.url)
    with commit():
        receivers.evaluate(experiment, _payload(srm_passed=False))
    delivery = Delivery.objects.get(subscription=sub)
    assert delivery.status == "delivered" and delivery.attempts == 2 and delivery.response_code == 200
    assert len(hook.requests) == 2
    for headers, body in hook.requests:  # every attempt is signed, verifiable independently
        t, v1 = (part.split("=", 1)[1] for part in headers["X-Signature"].split(","))
        assert v1 == hmac.new(sub.secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert json.loads(hook.requests[0][1])["condition"] == "srm"


def test_a_dead_endpoint_fails_after_max_attempts_and_never_breaks_the_report(commit, receiver, settings):
    settings.ALERT_MAX_ATTEMPTS = 3
    experiment = make_experiment("dead")
    _breach(experiment)
    hook = receiver([500, 502, 503, 500])
    sub = AlertSubscription.objects.create(channel="webhook", target=hook.url)  # global subscription
    with commit():
        ticket = tasks.request_refresh(experiment)
    assert tasks.task_status(ticket.task_id)["outcome"] == "computed"
    delivery = Delivery.objects.get(subscription=sub)
    assert delivery.status == "failed" and delivery.attempts == 3 and delivery.response_code == 503
    assert "HTTP 503" in delivery.error and len(hook.requests) == 3


def test_backoff_grows_exponentially(settings):
    settings.ALERT_RETRY_BASE_SECONDS = 10
    waits = [backoff_seconds(n) for n in (1, 2, 3, 4)]
    for n, wait in enumerate(waits):
        assert 10 * 2**n <= wait <= 10 * 2**n * 1.1


def test_slack_gets_its_incoming_webhook_format(commit, receiver):
    experiment = make_experiment("slk")
    hook = receiver()
    AlertSubscription.objects.create(experiment=experiment, channel="slack", target=hook.url)
    with commit():
        receivers.evaluate(experiment, _payload(breached=True))
    (headers, body), = hook.requests
    message = json.loads(body)
    assert "X-Signature" not in headers
    assert message["text"] == "Guardrail breached - slk"
    assert message["blocks"][0]["type"] == "section" and message["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "refund" in message["blocks"][0]["text"]["text"]


def test_email_goes_through_django_mail(commit, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    experiment = make_experiment("mail")
    AlertSubscription.objects.create(experiment=experiment, channel="email", target="pm@example.com")
    AlertSubscription.objects.create(experiment=make_experiment("other"), channel="email", target="x@example.com")
    with commit():
        receivers.evaluate(experiment, _payload(srm_passed=False))
    (message,) = mail.outbox
    assert message.to == ["pm@example.com"] and "Sample ratio mismatch" in message.subject
    assert "split is off" in message.body


# --- once per condition ---------------------------------------------------------------------------

def test_a_condition_fires_once_and_again_only_after_clearing(commit, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    experiment = make_experiment("once")
    AlertSubscription.objects.create(channel="email", target="pm@example.com")
    with commit():
        assert receivers.evaluate(experiment, _payload(breached=True)) == ["guardrail:refund:green"]
        assert receivers.evaluate(experiment, _payload(breached=True)) == []  # still breached: quiet
        assert receivers.evaluate(experiment, _payload(breached=False)) == []  # cleared
    state = AlertState.objects.get(key="guardrail:refund:green")
    assert not state.active and state.cleared_at is not None
    with commit():  # came back
        assert receivers.evaluate(experiment, _payload(breached=True)) == ["guardrail:refund:green"]
    assert len(mail.outbox) == 2 and Delivery.objects.count() == 2


def test_real_reports_alert_once_and_guard_pauses_a_guarded_experiment(commit, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    experiment = make_experiment("guarded")
    ExperimentAutomation.objects.create(experiment=experiment, guarded=True)
    AlertSubscription.objects.create(experiment=experiment, channel="email", target="pm@example.com")
    _breach(experiment)
    with commit():
        tasks.request_refresh(experiment)
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.PAUSED
    reason = experiment.history.first().history_change_reason
    assert reason == "paused by automation: guardrail refund breached"
    (message,) = mail.outbox
    assert "Guardrail breached" in message.subject and "Action taken: paused" in message.body
    with commit():
        tasks.request_refresh(experiment)  # the next report: the same condition, no second alert
    assert len(mail.outbox) == 1


def test_an_unguarded_experiment_is_alerted_but_keeps_running(commit, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    experiment = make_experiment("unguarded")
    AlertSubscription.objects.create(channel="email", target="pm@example.com")
    _breach(experiment)
    with commit():
        tasks.request_refresh(experiment)
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.RUNNING
    assert [m.subject for m in mail.outbox] == ["[experiments] Guardrail breached: unguarded"]


def test_srm_pauses_a_guarded_experiment():
    experiment = make_experiment("srm-guard")
    ExperimentAutomation.objects.create(experiment=experiment, guarded=True)
    assert receivers.evaluate(experiment, _payload(srm_passed=False)) == ["srm"]
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.PAUSED
    assert experiment.history.first().history_change_reason == "paused by automation: SRM detected"


def test_evaluation_errors_never_fail_the_report(commit, monkeypatch):
    experiment = make_experiment("boom")

    def broken(payload):
        raise RuntimeError("bug in a condition")

    monkeypatch.setattr(conditions, "srm", broken)
    with commit():
        ticket = tasks.request_refresh(experiment)
    assert tasks.task_status(ticket.task_id)["outcome"] == "computed"


def test_repeated_report_failures_alert_once_then_clear(commit, monkeypatch, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ALERT_REPORT_FAILURES = 3
    experiment = make_experiment("failing")
    AlertSubscription.objects.create(channel="email", target="ops@example.com")

    def fail(*args, **kwargs):
        raise reports.ReportError("the data is broken")

    monkeypatch.setattr(reports, "build_payload", fail)
    for _ in range(2):
        with commit():
            tasks.request_refresh(experiment)
    assert mail.outbox == []
    for _ in range(2):
        with commit():
            tasks.request_refresh(experiment)
    (message,) = mail.outbox
    assert "failed 3 times in a row" in message.body and "the data is broken" in message.body
    monkeypatch.undo()
    with commit():
        tasks.request_refresh(experiment)
    assert ExperimentAutomation.objects.get(experiment=experiment).report_failures == 0
    assert not AlertState.objects.get(experiment=experiment, key="report_failing").active


def test_overdue_fires_once_for_an_undecided_experiment_past_its_duration(commit, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    experiment = make_experiment("late", planned_duration_days=7)
    Experiment.objects.filter(pk=experiment.pk).update(started_at=timezone.now() - timedelta(days=8))
    make_experiment("on-time", planned_duration_days=7)
    decided = make_experiment("decided", planned_duration_days=7)
    Experiment.objects.filter(pk=decided.pk).update(started_at=timezone.now() - timedelta(days=8))
    ReportSnapshot.objects.create(experiment=decided, computed_at=timezone.now(),
                                  payload={"decision": {"recommendation": "ship"}})
    AlertSubscription.objects.create(channel="email", target="pm@example.com")
    with commit():
        assert check_overdue() == ["late"]
        assert check_overdue() == []
    assert len(mail.outbox) == 1 and "Experiment overdue" in mail.outbox[0].subject
    services.complete_experiment(experiment, actor="pm")
    check_overdue()
    assert not AlertState.objects.get(experiment=experiment, key="overdue").active


def test_decision_fires_but_a_guardrail_dont_ship_is_not_a_second_alert():
    experiment = make_experiment("dec")
    payload = {**_payload(breached=True), "decision": {"recommendation": "do_not_ship", "headline": "no"}}
    assert receivers.evaluate(experiment, payload) == ["guardrail:refund:green"]
    ship = {**_payload(), "decision": {"recommendation": "ship", "headline": "Ship green"}}
    assert receivers.evaluate(experiment, ship) == ["decision:ship"]
    assert conditions.data_quality({"data_quality": ["exposures without events"]}) == "exposures without events"


def test_a_new_phase_starts_clean_so_a_persisting_condition_fires_again(commit, settings):
    from experiments.phases import start_new_phase

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    experiment = make_experiment("phased-alert")
    AlertSubscription.objects.create(channel="email", target="pm@example.com")
    with commit():
        assert receivers.evaluate(experiment, _payload(srm_passed=False)) == ["srm"]
        assert receivers.evaluate(experiment, _payload(srm_passed=False)) == []
    start_new_phase(experiment, {}, rerandomize=True, reason="fix the split", actor="pm")
    experiment.refresh_from_db()
    with commit():
        assert receivers.evaluate(experiment, _payload(srm_passed=False)) == ["srm"]  # still broken
        assert receivers.evaluate(experiment, _payload(srm_passed=False)) == []
    assert len(mail.outbox) == 2
    assert AlertState.objects.get(experiment=experiment, key="srm").phase == 2


def test_sdk_exposures_the_server_refused_are_a_data_quality_condition():
    assert conditions.data_quality({"sdk_exposures": {"mismatched": 0, "stale": 0, "example": {}}}) is None
    message = conditions.data_quality({"sdk_exposures": {"mismatched": 3, "stale": 2, "example": {}}})
    assert message is not None and "5 SDK exposures refused (3 mismatched, 2 stale" in message
