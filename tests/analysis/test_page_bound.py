"""The report page of a big experiment loads a bounded amount (issue 10, "beyond the list").

50 variants x 200 metrics with many snapshots: the history chart reads only each kept
snapshot's compact ``lift_series`` (never the old full payloads), at most HISTORY_POINTS of them.
"""
from __future__ import annotations

import copy
import re
import time
import tracemalloc
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analysis import selectors
from analysis.models import ReportSnapshot
from analysis.stats import MetricInput, VariantStats, analyze_experiment
from experiments import services
from experiments.models import Metric

from .test_queries import T0

pytestmark = pytest.mark.django_db

VARIANTS, METRICS = 50, 200


@pytest.fixture(scope="module")
def big_payload():
    import numpy as np

    rng = np.random.default_rng(1)
    keys = ["control"] + [f"v{i}" for i in range(1, VARIANTS)]
    variants = {k: VariantStats(n=1000, sum=float(c), sum_sq=float(c))
                for k, c in zip(keys, rng.binomial(1000, 0.1, len(keys)), strict=True)}
    one = MetricInput(key="m0", name="Metric 0", kind="conversion", role="primary", direction="increase",
                      variants=variants)
    body = analyze_experiment(experiment="big", control="control", weights=dict.fromkeys(keys, 1.0),
                              metrics=[one], planned_sample_size=100_000)
    first = body["metrics"][0]
    # the same analysed metric 200 times (analysing 10,000 comparisons would dominate the test)
    body["metrics"] = [{**copy.deepcopy(first), "metric": f"m{i}", "name": f"Metric {i}",
                        "role": "primary" if i == 0 else "secondary"} for i in range(METRICS)]
    body["lift_series"] = selectors.lift_series(body)
    return body


def _big_experiment():
    Metric.objects.create(key="m0", name="Metric 0", event="e", kind="conversion")
    return services.create_experiment({
        "key": "big", "name": "big", "traffic_allocation": 100, "planned_sample_size": 100_000,
        "variants": [{"key": "control", "weight": 2, "is_control": True}]
        + [{"key": f"v{i}", "weight": 2} for i in range(1, VARIANTS)],
        "metrics": [{"metric": "m0", "role": "primary"}], "targeting": [],
    })


def _snapshots(exp, payload, count):
    ReportSnapshot.objects.bulk_create([
        ReportSnapshot(experiment=exp, computed_at=T0 + timedelta(hours=i), data_to=T0 + timedelta(hours=i),
                       payload=payload)
        for i in range(count)
    ])


def test_history_is_capped_and_reads_only_the_charted_series(db):
    exp = _big_experiment()
    small = {"metrics": [{"metric": "m0", "variants": []}],
             "lift_series": {"early_look": True, "metrics": {"m0": {"name": "M", "variants": {"v1": [0.1, 0, 0.2]}},
                                                             "m1": {"name": "N", "variants": {}}}}}
    _snapshots(exp, small, 3 * selectors.HISTORY_POINTS)
    with CaptureQueriesContext(connection) as ctx:
        history = selectors.snapshot_history(exp, metrics=["m0"])
    assert len(history) == selectors.HISTORY_POINTS
    sql = " ".join(q["sql"] for q in ctx.captured_queries).lower()
    assert "lift_series" in sql and "metrics" not in re.sub(r"lift_series\W+metrics", "", sql)  # never full results
    assert history[0]["series"] == {"early_look": True, "metrics": {"m0": small["lift_series"]["metrics"]["m0"]}}


@pytest.mark.slow
def test_big_report_page_is_bounded(db, client, django_user_model, big_payload):
    """50 variants x 200 metrics, 10 snapshots: figures printed for the report (-s)."""
    exp = _big_experiment()
    _snapshots(exp, big_payload, 10)
    user = django_user_model.objects.create_superuser("boss", "b@example.invalid", "pw")
    client.force_login(user)
    started = time.monotonic()
    r = client.get("/reports/big/")
    elapsed = time.monotonic() - started
    tracemalloc.start()
    client.get("/reports/big/")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert r.status_code == 200
    assert r.content.count(b'class="chart chart-line"') <= 1 + 10  # exposures + capped history charts
    assert r.content.count(b'class="table metric-table"') == 30 and b"170 more secondary metric(s)" in r.content
    print(f"report page: {elapsed:.2f} s, peak {peak / 1e6:.0f} MB traced, {len(r.content) / 1e6:.1f} MB of HTML")
