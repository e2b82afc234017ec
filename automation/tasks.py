"""Celery tasks: alert delivery (retries with exponential backoff) and the beat jobs."""
from __future__ import annotations

import logging
import random

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from . import channels
from .models import Delivery

logger = logging.getLogger(__name__)


def max_attempts() -> int:
    return max(1, int(getattr(settings, "ALERT_MAX_ATTEMPTS", 6)))


def backoff_seconds(attempt: int) -> float:
    """Wait before attempt ``attempt + 1``: base * 2**(attempt-1), capped, with up to 10 % jitter."""
    base = float(getattr(settings, "ALERT_RETRY_BASE_SECONDS", 10))
    cap = float(getattr(settings, "ALERT_RETRY_MAX_SECONDS", 3600))
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay + random.uniform(0, delay / 10)


def attempt(delivery: Delivery) -> bool:
    """One attempt: send, record the outcome; True when it is settled (delivered or given up)."""
    sub = delivery.subscription
    delivery.attempts += 1
    try:
        delivery.response_code = channels.send(sub.channel, sub.target, sub.secret, delivery.payload)
    except channels.DeliveryError as exc:
        delivery.response_code, delivery.error = exc.status, str(exc)[:2000]
        if delivery.attempts >= max_attempts():
            delivery.status = Delivery.Status.FAILED
            logger.warning("delivery %s failed for good after %d attempts: %s", delivery.pk, delivery.attempts, exc)
        delivery.save()
        return delivery.status == Delivery.Status.FAILED
    delivery.status, delivery.error, delivery.delivered_at = Delivery.Status.DELIVERED, "", timezone.now()
    delivery.save()
    return True


@shared_task(bind=True, name="automation.tasks.deliver", acks_late=True, max_retries=None, ignore_result=True)
def deliver(self, delivery_id: int) -> str:
    """Send one delivery; on failure retry after ``backoff_seconds`` until ALERT_MAX_ATTEMPTS.

    Embedded (eager) mode has no worker to come back later: the attempts follow each other at once.
    """
    delivery = Delivery.objects.select_related("subscription").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != Delivery.Status.PENDING:
        return "gone" if delivery is None else delivery.status
    while not attempt(delivery):
        countdown = backoff_seconds(delivery.attempts)
        logger.info("delivery %s attempt %d failed (%s); retrying in %.0f s", delivery.pk, delivery.attempts,
                    delivery.error, 0 if self.request.is_eager else countdown)
        if not self.request.is_eager:
            raise self.retry(countdown=countdown)
    return delivery.status


@shared_task(name="automation.tasks.run_scheduled_actions", ignore_result=True)
def run_scheduled_actions() -> int:
    """Beat job (every minute): run the scheduled actions that are due."""
    from .schedules import run_due

    return run_due()


@shared_task(name="automation.tasks.check_overdue_experiments", ignore_result=True)
def check_overdue_experiments() -> int:
    """Beat job: alert on running experiments past their planned duration without a decision."""
    from .overdue import check_overdue

    return len(check_overdue())
