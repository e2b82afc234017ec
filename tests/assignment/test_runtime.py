"""The process-local configuration cache and its cross-process invalidation."""
from __future__ import annotations

import pytest
from django.core.cache import cache

from assignment import runtime
from experiments.models import Experiment


@pytest.fixture
def clock(monkeypatch):
    """A controllable ``time.monotonic`` as seen by the runtime module."""
    now = [1_000.0]
    monkeypatch.setattr(runtime.time, "monotonic", lambda: now[0])
    return now


def test_signal_invalidates_this_process_at_once(make_experiment):
    assert runtime.current().evaluator.keys == ()
    make_experiment("first")
    assert runtime.current().evaluator.keys == ("first",)


def test_bump_happens_again_after_commit(make_experiment, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        make_experiment("first")
    assert runtime.bump_version in callbacks


def test_other_processes_notice_a_moved_stamp_within_the_check_interval(make_experiment, clock, settings):
    settings.ASSIGNMENT_CONFIG_CHECK_SECONDS = 1.0
    experiment = make_experiment("first")
    before = runtime.current()
    # Another process changes the definition and bumps the shared stamp; this process's
    # local copy is not told directly (no signal here: a bulk update plus a foreign bump).
    Experiment.objects.filter(pk=experiment.pk).update(traffic_allocation=80)
    cache.set(runtime.STAMP_KEY, "bumped-elsewhere")
    clock[0] += 0.5
    assert runtime.current() is before  # still cached: no stamp read inside the interval
    clock[0] += 0.6
    after = runtime.current()
    assert after is not before
    assert after.evaluator.experiment("first")["traffic_allocation"] == 80.0


def test_no_rebuild_while_the_stamp_is_unchanged(make_experiment, clock, django_assert_num_queries):
    make_experiment("first")
    state = runtime.current()
    clock[0] += 5
    with django_assert_num_queries(0):
        assert runtime.current() is state


def test_max_age_catches_writes_that_bypass_signals(make_experiment, clock, settings):
    settings.ASSIGNMENT_CONFIG_MAX_AGE = 60
    experiment = make_experiment("first")
    runtime.current()
    Experiment.objects.filter(pk=experiment.pk).update(traffic_allocation=70)
    clock[0] += 30
    assert runtime.current().evaluator.experiment("first")["traffic_allocation"] == 100.0
    clock[0] += 31
    assert runtime.current().evaluator.experiment("first")["traffic_allocation"] == 70.0


def test_failed_rebuild_keeps_serving_the_last_good_config(make_experiment, monkeypatch):
    make_experiment("first")
    good = runtime.current()

    def broken(*args):
        raise RuntimeError("database down")

    monkeypatch.setattr(runtime, "build_document", broken)
    runtime.bump_version()
    assert runtime.current() is good


def test_unchanged_content_keeps_the_compiled_evaluator(make_experiment):
    make_experiment("first")
    state = runtime.current()
    runtime.bump_version()
    assert runtime.current() is state  # same content hash: nothing recompiled
