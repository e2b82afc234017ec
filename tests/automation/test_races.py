"""Once-per-condition under concurrency (PostgreSQL): two evaluations at once fire one alert."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from automation.alerts import set_condition
from automation.models import AlertState
from tests.analysis.reporting import make_experiment

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _race(experiment, n: int = 4) -> list[bool]:
    results, barrier = [], threading.Barrier(n)

    def run():
        try:
            barrier.wait()
            results.append(set_condition(experiment, "srm", True, "split is off"))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.fixture
def experiment():
    if connection.vendor != "postgresql":
        pytest.skip("row locks and concurrent inserts need PostgreSQL")
    return make_experiment("race")


def test_concurrent_first_evaluations_fire_once(experiment):
    for _ in range(5):  # the first-insert race (no row to lock yet), several times
        AlertState.objects.all().delete()
        results = _race(experiment)
        assert sorted(results) == [False, False, False, True]


def test_concurrent_evaluations_of_a_cleared_condition_fire_once(experiment):
    set_condition(experiment, "srm", True)
    set_condition(experiment, "srm", False)  # the row exists and is clear: the row lock decides
    for _ in range(3):
        results = _race(experiment)
        assert sorted(results) == [False, False, False, True]
        set_condition(experiment, "srm", False)
