"""Celery tasks of the report pipeline, and the helpers that enqueue them and read their state.

* ``compute_report`` computes one experiment's snapshot. It is idempotent (a redelivered task
  whose snapshot is already stored does nothing), acknowledged late and rejected when its worker
  dies (so the broker redelivers it), retried with exponential backoff on database or broker
  errors, and never runs twice at once for one experiment: a lock in the shared cache
  (``cache.add`` with a short expiry, ``REPORT_LOCK_SECONDS``, renewed by a heartbeat thread while
  the computation runs, released only by its holder) makes a concurrent second run a no-op.
  A worker killed mid-report stops renewing: within ``REPORT_LOCK_SECONDS`` its lock expires,
  its task reads as FAILURE ("worker lost") instead of STARTED, and the next refresh enqueues a
  new computation at once; the broker redelivers the dead worker's message after
  ``CELERY_VISIBILITY_TIMEOUT`` (120 s) and that run does nothing if it was declared lost.
* ``refresh_running_experiments`` is the beat job (schedule: ``CELERY_BEAT_SCHEDULE``).

``request_refresh`` is what the API, the report page, the admin and the beat job call: it
enqueues one computation per experiment at a time (a second request while one is pending gets the
same task id back). ``task_status`` reports a task's state from Celery's result backend; in the
embedded (eager) mode the task has already run when ``request_refresh`` returns, so its outcome is
recorded in the cache instead.
"""
from __future__ import annotations

import logging
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import kombu.exceptions
import redis.exceptions
from celery import shared_task, states
from celery.signals import task_prerun
from django.conf import settings
from django.core.cache import cache, caches
from django.db import InterfaceError, OperationalError

from experiments.models import Experiment

from . import reports, signals
from .models import ReportSnapshot

logger = logging.getLogger(__name__)

#: Errors worth retrying: the database or the broker/cache was briefly unreachable.
BROKER_ERRORS = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
RETRYABLE = (OperationalError, InterfaceError, *BROKER_ERRORS)
TASK_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
RECORD_SECONDS = 24 * 3600


LOST = "The worker computing this report stopped (no heartbeat); request a refresh to compute it again."


def _lock_seconds() -> int:
    """Expiry of the lock and heartbeat (renewed every third of it while a report runs)."""
    return max(1, int(getattr(settings, "REPORT_LOCK_SECONDS", 30)))


def _pending_seconds() -> int:
    """How long a refresh joins a queued (not yet started) computation."""
    return int(getattr(settings, "REPORT_PENDING_SECONDS", 600))


def lock_key(experiment_id: int, phase: int | None = None) -> str:
    """One computation at a time per experiment (and per earlier phase, recomputed on request)."""
    return f"analysis:report-lock:{experiment_id}" + (f":phase{phase}" if phase else "")


def pending_key(experiment_id: int, phase: int | None = None) -> str:
    return f"analysis:report-pending:{experiment_id}" + (f":phase{phase}" if phase else "")


def record_key(task_id: str) -> str:
    return f"analysis:report-task:{task_id}"


def alive_key(task_id: str) -> str:
    """Set by a running computation and renewed by its heartbeat: absent = its worker is gone."""
    return f"analysis:report-alive:{task_id}"


# --- the lock -----------------------------------------------------------------------------------

_RELEASE_LUA = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
)


def acquire_lock(key: str, token: str, timeout: int | None = None) -> bool:
    """Take ``key`` for ``token`` unless someone else holds it (holding it already counts)."""
    if cache.add(key, token, timeout or _lock_seconds()):
        return True
    return cache.get(key) == token


_RENEW_LUA = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)


def renew_lock(key: str, token: str, timeout: int | None = None) -> bool:
    """Extend ``key``'s expiry if ``token`` still holds it (atomic on Redis)."""
    seconds = timeout or _lock_seconds()
    backend = caches["default"]
    try:
        from django.core.cache.backends.redis import RedisCache

        if isinstance(backend, RedisCache):
            full = backend.make_and_validate_key(key)
            client = backend._cache.get_client(full, write=True)
            raw = backend._cache._serializer.dumps(token)
            return bool(client.eval(_RENEW_LUA, 1, full, raw, int(seconds * 1000)))
    except AttributeError:  # pragma: no cover - Django internals moved; fall back below
        pass
    return backend.get(key) == token and backend.touch(key, seconds)


class Heartbeat:
    """Renews the lock and the task's alive key every third of ``REPORT_LOCK_SECONDS``."""

    def __init__(self, token: str, keys: list[str]) -> None:
        self.token, self.keys = token, keys
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="report-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(_lock_seconds() / 3):
            for key in self.keys:
                try:
                    renew_lock(key, self.token)
                except Exception:  # the cache is briefly down: try again at the next beat
                    logger.warning("report heartbeat failed", exc_info=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()


def release_lock(key: str, token: str) -> bool:
    """Delete ``key`` only if ``token`` still holds it (an expired lock may belong to another).

    Atomic compare-and-delete on Redis; a get-then-delete elsewhere (in-process caches).
    """
    backend = caches["default"]
    try:
        from django.core.cache.backends.redis import RedisCache

        if isinstance(backend, RedisCache):
            full = backend.make_and_validate_key(key)
            client = backend._cache.get_client(full, write=True)
            raw = backend._cache._serializer.dumps(token)
            return bool(client.eval(_RELEASE_LUA, 1, full, raw))
    except AttributeError:  # pragma: no cover - Django internals moved; fall back below
        pass
    if backend.get(key) == token:
        backend.delete(key)
        return True
    return False


# --- the tasks ----------------------------------------------------------------------------------

@shared_task(
    bind=True,
    name="analysis.tasks.compute_report",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=RETRYABLE,
    retry_backoff=5,
    retry_backoff_max=100,  # below CELERY_VISIBILITY_TIMEOUT: a waiting retry is not redelivered
    retry_jitter=True,
    max_retries=5,
)
def compute_report(self, experiment_key: str, phase: int | None = None) -> dict[str, Any]:
    """Compute and store ``experiment_key``'s report (of an earlier ``phase`` when given, else
    of the current one); see the module docstring for guarantees."""
    task_id = self.request.id or ""
    # This run's token: the task id (what a lock holder is reported as) and a run id (a
    # redelivered copy of a task that is still running must not share its lock).
    token = getattr(self.request, "run_token", None) or f"{task_id or 'local'}/{uuid.uuid4().hex}"
    if task_id:  # only if no other run of this task is alive (that one keeps renewing its own)
        cache.add(alive_key(task_id), token, _lock_seconds())
    experiment = Experiment.objects.filter(key=experiment_key).only("id", "key", "current_phase").first()
    if experiment is None:
        return {"outcome": "missing", "experiment": experiment_key, "snapshot_id": None}
    if phase == experiment.current_phase:
        phase = None
    if task_id:
        if (cache.get(record_key(task_id)) or {}).get("lost"):
            # Redelivered after its worker died and was declared lost; a newer refresh took over.
            return {"outcome": "abandoned", "experiment": experiment_key, "snapshot_id": None}
        done = ReportSnapshot.objects.filter(experiment=experiment, task_id=task_id).only("id").first()
        if done is not None:  # redelivered after the commit: the work is already there
            release_lock(pending_key(experiment.pk, phase), task_id)
            return {"outcome": "already_computed", "experiment": experiment_key, "snapshot_id": done.pk}
    key = lock_key(experiment.pk, phase)
    if not acquire_lock(key, token):
        holder = str(cache.get(key) or "")
        holder_task = holder.split("/")[0]
        if task_id and holder_task == task_id:
            if cache.get(alive_key(task_id)) != token:
                # A copy of this very task runs elsewhere (redelivered while alive): try later.
                raise self.retry(countdown=_lock_seconds())
            cache.set(key, token, _lock_seconds())  # a dead run of this task: take over its lock
        else:
            logger.info("report of %s already being computed by %s; skipped", experiment_key, holder_task)
            if task_id:
                release_lock(pending_key(experiment.pk, phase), task_id)
            return {"outcome": "skipped", "experiment": experiment_key, "snapshot_id": None,
                    "running_task_id": holder_task or None}
    if task_id:
        cache.set(alive_key(task_id), token, _lock_seconds())
    try:
        with Heartbeat(token, [key, *([alive_key(task_id)] if task_id else [])]):
            snapshot = reports.compute_report(experiment_key, task_id=task_id, phase=phase)
    except reports.ReportError as exc:
        if task_id:
            release_lock(pending_key(experiment.pk, phase), task_id)
        _notify(signals.report_failed, experiment=experiment, error=str(exc), phase=phase)
        raise
    except RETRYABLE:
        raise
    except Exception as exc:
        _notify(signals.report_failed, experiment=experiment, error=str(exc) or type(exc).__name__, phase=phase)
        raise
    finally:
        release_lock(key, token)
    _notify(signals.report_computed, experiment=experiment, snapshot=snapshot, phase=phase)
    if task_id:
        release_lock(pending_key(experiment.pk, phase), task_id)
    result = {
        "outcome": "computed",
        "experiment": experiment_key,
        "snapshot_id": snapshot.pk,
        "computed_at": snapshot.computed_at.isoformat(),
        "duration_ms": snapshot.duration_ms,
    }
    if task_id and not _eager():  # the record wins over a "lost" verdict from a slow heartbeat
        _record(task_id, experiment_key, state=states.SUCCESS, outcome="computed", snapshot_id=snapshot.pk,
                lost=False, error=None)
    return result


def _notify(signal, **kwargs: Any) -> None:
    """Tell other apps (alerts); their failures are logged, never raised into the report task."""
    for receiver, response in signal.send_robust(sender=compute_report, **kwargs):
        if isinstance(response, Exception):
            logger.error("report signal receiver %r failed", receiver, exc_info=response)


@task_prerun.connect(dispatch_uid="analysis.tasks.mark_alive")
def _mark_alive(sender=None, task_id: str | None = None, task=None, **kwargs) -> None:
    """Before Celery stores STARTED: a task that reads STARTED without its alive key is dead."""
    if getattr(sender, "name", None) != compute_report.name or not task_id:
        return
    token = f"{task_id}/{uuid.uuid4().hex}"
    try:
        sender.request.run_token = token
        cache.add(alive_key(task_id), token, _lock_seconds())
    except Exception:  # bookkeeping only; the task sets it again
        logger.warning("could not mark report task %s alive", task_id, exc_info=True)


@shared_task(name="analysis.tasks.refresh_running_experiments", ignore_result=True)
def refresh_running_experiments() -> int:
    """Beat job: flush buffered exposures, then enqueue a report of every running experiment."""
    try:
        reports._flush_exposures()
    except Exception:  # the per-report flush tries again; don't skip the reports for it
        logger.exception("could not flush exposures before the scheduled reports")
    count = 0
    for experiment in Experiment.objects.filter(status=Experiment.Status.RUNNING).only("id", "key"):
        try:
            request_refresh(experiment)
            count += 1
        except Exception:
            logger.exception("could not enqueue the report of %s", experiment.key)
    return count


@shared_task(name="analysis.tasks.load_clickhouse", ignore_result=True)
def load_clickhouse() -> int:
    """Beat job (``ANALYTICS_BACKEND=clickhouse``): move the event stream into ClickHouse in large
    inserts, acknowledging entries only once inserted (``analysis.loader``); returns rows loaded.
    Several workers may run it at once: the consumer group gives each its own entries."""
    from . import clickhouse, loader

    if not clickhouse.enabled():
        return 0
    seconds = float(getattr(settings, "CLICKHOUSE_LOAD_SECONDS", 5))
    result = loader.load(max_seconds=max(1.0, seconds * 0.9))  # done before the next beat
    return result.events + result.exposures


# --- enqueueing and state ------------------------------------------------------------------------

class QueueUnavailable(Exception):
    """The broker could not take the task; the caller should retry later."""


@dataclass(frozen=True)
class RefreshTicket:
    task_id: str
    experiment: str
    deduplicated: bool
    state: str


def _eager() -> bool:
    return bool(compute_report.app.conf.task_always_eager)


def _record(task_id: str, experiment: str, **extra: Any) -> None:
    try:
        record = cache.get(record_key(task_id)) or {"experiment": experiment}
        record.update(extra)
        cache.set(record_key(task_id), record, RECORD_SECONDS)
    except Exception:  # bookkeeping only: the task itself is what matters
        logger.warning("could not record task %s", task_id, exc_info=True)


def _finished(task_id: str) -> bool:
    record = cache.get(record_key(task_id)) or {}
    if record.get("state") in states.READY_STATES:
        return True
    if _eager():
        return True  # an eager task has run by the time anyone can ask
    return task_state(task_id) in states.READY_STATES  # a lost task counts as finished (FAILURE)


def request_refresh(experiment: Experiment, *, phase: int | None = None) -> RefreshTicket:
    """Enqueue a report computation of ``experiment`` (of an earlier ``phase`` when given), or
    return the one already pending.

    Raises QueueUnavailable when the broker is down. In the eager mode the computation has run
    (or failed, recorded as FAILURE) when this returns.
    """
    if phase == experiment.current_phase:
        phase = None
    pkey = pending_key(experiment.pk, phase)
    pending = cache.get(pkey)
    if pending:
        if not _finished(pending):
            return RefreshTicket(pending, experiment.key, True, task_state(pending))
        release_lock(pkey, pending)
    task_id = str(uuid.uuid4())
    if not cache.add(pkey, task_id, _pending_seconds()):
        other = cache.get(pkey)
        if other:
            return RefreshTicket(other, experiment.key, True, task_state(other))
    _record(task_id, experiment.key)
    try:
        async_result = compute_report.apply_async(
            args=[experiment.key], kwargs={"phase": phase} if phase else {}, task_id=task_id
        )
    except BROKER_ERRORS as exc:
        release_lock(pkey, task_id)
        if not _eager():
            _record(task_id, experiment.key, state=states.FAILURE, error="the task queue is unavailable")
            raise QueueUnavailable(str(exc)) from exc
        _record(task_id, experiment.key, state=states.FAILURE, error=str(exc))
    except Exception as exc:  # eager mode propagates the task's own failure
        release_lock(pkey, task_id)
        if not _eager():
            raise
        logger.exception("report of %s failed", experiment.key)
        _record(task_id, experiment.key, state=states.FAILURE, error=str(exc) or type(exc).__name__)
    else:
        if _eager():
            outcome = async_result.result if isinstance(async_result.result, dict) else {}
            _record(task_id, experiment.key, state=states.SUCCESS, outcome=outcome.get("outcome"),
                    snapshot_id=outcome.get("snapshot_id"))
    return RefreshTicket(task_id, experiment.key, False, task_state(task_id))


def _result_experiment(async_result) -> str | None:
    try:
        args = async_result.args  # CELERY_RESULT_EXTENDED
        return str(args[0]) if args else None
    except Exception:  # pragma: no cover - backend without extended results
        return None


def task_state(task_id: str) -> str:
    status = task_status(task_id)
    return status["state"] if status else states.PENDING


def task_status(task_id: str) -> dict[str, Any] | None:
    """``{"task_id", "state", "ready", "experiment", "outcome", "snapshot_id", "error"}``, or
    None for an id nobody enqueued (unknown to the cache, the result backend and the snapshots)."""
    if not TASK_ID_RE.fullmatch(task_id or ""):
        return None
    record = cache.get(record_key(task_id)) or {}
    state, result = record.get("state"), None
    if state is None and not _eager():
        async_result = compute_report.AsyncResult(task_id)
        state = async_result.state
        if state in states.READY_STATES:
            result = async_result.result
        elif state == states.STARTED and cache.get(alive_key(task_id)) is None:
            # Its worker died (kill -9, lost machine): no heartbeat for REPORT_LOCK_SECONDS.
            state = states.FAILURE
            record = {**record, "experiment": record.get("experiment") or _result_experiment(async_result),
                      "state": state, "lost": True, "error": LOST}
            _record(task_id, record["experiment"] or "", state=state, lost=True, error=LOST)
    if not isinstance(result, dict):
        result = {"error": str(result) or type(result).__name__} if isinstance(result, BaseException) else {}
    info = {**result, **record}
    experiment = info.get("experiment")
    snapshot_id = info.get("snapshot_id")
    if experiment and snapshot_id is None:
        # Index-friendly (experiment first); also finds work whose result expired.
        snapshot_id = ReportSnapshot.objects.filter(experiment__key=experiment, task_id=task_id).values_list(
            "id", flat=True).first()
    if snapshot_id is not None and state in (None, states.PENDING):
        state = states.SUCCESS  # the result expired or was never stored (eager): the work is there
    if state is None or (state == states.PENDING and not record):
        return None
    outcome = info.get("outcome") or ("computed" if snapshot_id is not None else None)
    return {
        "task_id": task_id,
        "state": state,
        "ready": state in states.READY_STATES,
        "experiment": experiment,
        "outcome": outcome,
        "snapshot_id": snapshot_id,
        "error": (info.get("error") or "The computation failed.") if state == states.FAILURE else None,
    }
