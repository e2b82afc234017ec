"""The per-day series and audience conditions on every engine: the same SQL builder on DuckDB and
ClickHouse (chdb) gives what Django's database (SQLite or PostgreSQL) gives. Optional packages:
skipped when missing (like ``test_dialects``)."""
from __future__ import annotations

import math

import pytest

from analysis import daily, dialects, engines, queries, segments
from assignment.models import Exposure

from .test_dialects import _factories, generated  # noqa: F401 - fixture


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


@pytest.mark.parametrize("factory", _factories())
def test_daily_increments_and_audiences_agree_across_engines(generated, factory):  # noqa: F811
    experiment = generated
    specs, want = daily.daily_increments(experiment)
    assert want and any(s.pre for s in specs) and any(s.kind == "ratio" for s in specs)
    audience = {"key": "a", "match": "any", "conditions": [
        {"attribute": "country", "operator": "in", "values": ["US", "DE"]},
        {"attribute": "age", "operator": "gte", "values": ["45"]},
        {"attribute": "beta", "operator": "equals", "values": [True]}]}
    expression = segments.audience_expression(queries._d(), queries._q("attributes"), audience)
    segments._register_sqlite_functions()
    want_seg = queries.segment_statistics(experiment, "audience:a", expression=expression)
    loaded = engines.from_django(factory)
    with dialects.using(loaded):
        _, got = daily.daily_increments(experiment)
        expression = segments.audience_expression(queries._d(), queries._q("attributes"), audience)
        got_seg = queries.segment_statistics(experiment, "audience:a", expression=expression)
    assert set(got) == set(want)
    for key in want:
        assert all(_close(a, b) for a, b in zip(got[key], want[key], strict=True)), key
    assert list(got_seg) == list(want_seg)
    members = sum(vs.n for vs in want_seg["member"]["conv"].values())
    total = Exposure.objects.filter(experiment=experiment).count()
    assert 0 < members < total
    for seg in want_seg:
        for metric in want_seg[seg]:
            assert {k: v.n for k, v in got_seg[seg][metric].items()} == {k: v.n for k, v in want_seg[seg][metric].items()}
