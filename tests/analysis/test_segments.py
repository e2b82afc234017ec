"""Segment breakdowns (``analysis.segments``): which dimensions, '(other)' merging, the
Benjamini-Hochberg adjustment across segments, and audience membership evaluated in SQL.

The SQL translation of audience conditions is checked against the targeting evaluator itself
(``assignment.targeting``) on awkwardly typed attributes; runs on SQLite and, in the PostgreSQL
pass, on PostgreSQL.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from statsmodels.stats.multitest import multipletests

from analysis import csv_export, queries, reports, segments
from assignment import targeting
from assignment.models import Exposure

from .reporting import make_experiment, populate

pytestmark = pytest.mark.django_db

ATTRIBUTES = [
    {"age": 30, "name": "alpha", "beta": True, "country": "US"},
    {"age": "30", "name": "alphabet", "beta": "true", "country": "FR"},
    {"age": "30.0", "name": "Alpha", "beta": False, "country": "US"},
    {"age": 30.5, "name": 5, "beta": "false", "country": "DE"},
    {"age": "1e2", "name": "bet", "beta": None},
    {"age": "abc", "name": "", "beta": 1},
    {"age": -4, "country": 7},
    {"age": True, "name": "x's \"quoted\" %s"},
    {},
    {"age": "1e400", "name": "9" * 120},
]
RULES = [
    {"attribute": "age", "operator": "exists"},
    {"attribute": "beta", "operator": "not_exists"},
    {"attribute": "age", "operator": "equals", "values": [30]},
    {"attribute": "age", "operator": "equals", "values": ["30"]},
    {"attribute": "age", "operator": "not_equals", "values": ["30"]},
    {"attribute": "age", "operator": "in", "values": [30.5, "abc", True]},
    {"attribute": "age", "operator": "not_in", "values": [30, "1e2"]},
    {"attribute": "beta", "operator": "equals", "values": [True]},
    {"attribute": "beta", "operator": "equals", "values": ["true"]},
    {"attribute": "beta", "operator": "not_equals", "values": [False]},
    {"attribute": "beta", "operator": "equals", "values": [1]},
    {"attribute": "age", "operator": "gt", "values": [30]},
    {"attribute": "age", "operator": "gte", "values": ["30"]},
    {"attribute": "age", "operator": "lt", "values": [50]},
    {"attribute": "age", "operator": "lte", "values": [-4]},
    {"attribute": "age", "operator": "gt", "values": ["abc"]},
    {"attribute": "name", "operator": "contains", "values": ["alpha"]},
    {"attribute": "name", "operator": "contains", "values": ["%s"]},
    {"attribute": "name", "operator": "contains", "values": [5]},
    {"attribute": "name", "operator": "equals", "values": ["x's \"quoted\" %s"]},
    {"attribute": "country", "operator": "in", "values": ["US", "DE"]},
    {"attribute": "country", "operator": "not_in", "values": ["US"]},
]


@pytest.fixture
def typed_units():
    experiment = make_experiment()
    variant = experiment.variants.get(is_control=True)
    now = timezone.now()
    Exposure.objects.bulk_create([
        Exposure(experiment=experiment, variant=variant, unit_id=f"u{i}", first_seen=now, last_seen=now,
                 attributes=attrs)
        for i, attrs in enumerate(ATTRIBUTES)
    ])
    return experiment


def _members(experiment, sql: str, params: list) -> set[str]:
    segments._register_sqlite_functions()
    table = connection.ops.quote_name(Exposure._meta.db_table)
    rows = queries._fetch(
        f"SELECT unit_id FROM {table} WHERE experiment_id = %s AND ({sql})", [experiment.pk, *params])
    return {r[0] for r in rows}


def _expected(rules: list[dict], match: str = "all") -> set[str]:
    checks = targeting.compile_rules(rules)
    out = set()
    for i, attrs in enumerate(ATTRIBUTES):
        results = [check(attrs) is None for check in checks]
        if (all(results) if match == "all" else any(results)):
            out.add(f"u{i}")
    return out


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r['attribute']}-{r['operator']}-{r.get('values')}")
def test_each_sql_condition_agrees_with_the_targeting_evaluator(typed_units, rule):
    sql, params = segments.condition_sql(queries._d(), queries._q("attributes"), rule)
    assert _members(typed_units, sql, params) == _expected([rule])


@pytest.mark.parametrize("match", ["all", "any"])
def test_audience_expressions_combine_conditions(typed_units, match):
    audience = {"key": "mixed", "match": match, "conditions": [RULES[0], RULES[16], RULES[20]]}
    sql, params = segments.audience_expression(queries._d(), queries._q("attributes"), audience)
    got = _members(typed_units, f"{sql} = %s", [*params, segments.MEMBER])
    assert got == _expected(audience["conditions"], match)
    empty = segments.audience_expression(queries._d(), queries._q("attributes"), {"key": "e", "conditions": []})
    assert len(_members(typed_units, f"{empty[0]} = %s", [*empty[1], segments.MEMBER])) == len(ATTRIBUTES)


def test_operators_sql_cannot_express_are_refused():
    d, col = queries._d(), queries._q("attributes")
    assert segments.condition_sql(d, col, {"attribute": "v", "operator": "semver_gt", "values": ["1.2.0"]}) is None
    assert segments.condition_sql(d, col, {"attribute": "bad name'", "operator": "exists"}) is None
    reason = segments.audience_expression(d, col, {"key": "k", "conditions": [
        {"attribute": "signup", "operator": "before", "values": ["2026-01-01"]}]})
    assert isinstance(reason, str) and "before" in reason and "skipped" in reason
    assert "match" in segments.audience_expression(d, col, {"key": "k", "match": "some", "conditions": []})


@pytest.fixture
def simulated(settings):
    experiment = make_experiment(targeting_attribute="platform")
    populate(experiment, units=1500, lift=0.3, days=5)
    return experiment


def test_configured_attributes_plus_targeting_and_the_experiment_list_wins(settings):
    settings.REPORT_SEGMENT_ATTRIBUTES = ["plan"]
    draft = make_experiment("draft", start=False, targeting_attribute="platform")
    assert segments.segment_attributes(draft) == ["plan", "platform"]
    own = make_experiment("own", start=False, segment_attributes=["country"])
    assert segments.segment_attributes(own) == ["country"]
    # started: the list is frozen with the plan (changing the setting later does not change it)
    started = make_experiment("started", targeting_attribute="platform")
    settings.REPORT_SEGMENT_ATTRIBUTES = ["country"]
    assert segments.segment_attributes(started) == ["plan", "platform"]
    assert started.phases.get(number=1).plan["segment_attributes"] == ["plan", "platform"]


def test_small_and_excess_segments_are_merged_into_other(settings, simulated):
    settings.REPORT_MAX_SEGMENTS = 2
    payload = reports.compute_report(simulated).payload
    by_country = payload["segments"]["country"]
    assert len(by_country) == 3 and list(by_country)[-1] == queries.OTHER_SEGMENT
    total = Exposure.objects.filter(experiment=simulated).count()
    assert sum(v["units"] for value in by_country.values() for v in value[0]["variants"]) == total
    assert payload["segments_info"]["max_segments"] == 2
    settings.REPORT_MAX_SEGMENTS = 10
    settings.REPORT_SEGMENT_MIN_UNITS = total  # every value is too small: one "(other)"
    assert list(reports.compute_report(simulated).payload["segments"]["country"]) == [queries.OTHER_SEGMENT]


def test_every_metric_is_broken_down_with_bh_adjusted_p_values_and_a_caveat(settings, simulated):
    payload = reports.compute_report(simulated).payload
    assert "exploration" in payload["segments_info"]["caveat"]
    block = payload["segments"]["country"]
    assert len(block) >= 3
    for metric in ("purchase", "revenue", "refund"):
        entries = [v for ms in block.values() for m in ms if m["metric"] == metric
                   for v in m["variants"] if not v["is_control"] and v["p_value"] is not None]
        assert len(entries) >= 3
        expected = multipletests([v["p_value"] for v in entries], method="fdr_bh")[1]
        assert [v["p_value_segments"] for v in entries] == pytest.approx(list(expected), rel=1e-12)
    rows = [r for r in csv_export.rows(payload) if r["section"] == "segment" and not r["is_control"]]
    assert rows and all(r["p_value_segments"] is not None or r["p_value"] is None for r in rows)


def test_audience_dimension_counts_members_in_sql(settings, simulated):
    audiences = [
        {"key": "mobile-us", "match": "all", "conditions": [
            {"attribute": "platform", "operator": "in", "values": ["ios", "android"]},
            {"attribute": "country", "operator": "equals", "values": ["US"]}]},
        {"key": "new-app", "match": "all", "conditions": [
            {"attribute": "app_version", "operator": "semver_gte", "values": ["2.0.0"]}]},
        {"key": "bad key!", "conditions": []},
    ]
    payload = reports.compute_report(simulated, audiences=audiences).payload
    block = payload["segments"]["audience:mobile-us"]
    expected = _expected_members(simulated, audiences[0]["conditions"])
    got = {value: sum(v["units"] for v in ms[0]["variants"]) for value, ms in block.items()}
    total = Exposure.objects.filter(experiment=simulated).count()
    assert got == {segments.MEMBER: expected, segments.NON_MEMBER: total - expected}
    assert "audience:new-app" not in payload["segments"]
    notes = " ".join(payload["segments_info"]["notes"])
    assert "semver_gte" in notes and "bad key" in notes
    # the frozen attributes first, then the audiences
    assert payload["segments_info"]["dimensions"] == ["country", "platform", "plan", "audience:mobile-us"]


def _expected_members(experiment, rules) -> int:
    return sum(1 for attrs in Exposure.objects.filter(experiment=experiment).values_list("attributes", flat=True)
               if targeting.matches(rules, attrs))


def test_the_refresh_task_reports_without_audiences(settings, simulated):
    from analysis import tasks

    tasks.compute_report.apply(args=[simulated.key]).get()
    snapshot = simulated.snapshots.latest()
    assert not [k for k in snapshot.payload["segments"] if k.startswith("audience:")]
    assert snapshot.payload["daily_series"]["metrics"]
    assert snapshot.computed_at > timezone.now() - timedelta(minutes=5)


@pytest.mark.postgres
def test_sql_conditions_on_postgresql(typed_units):
    assert connection.vendor == "postgresql"
    for rule in RULES:
        sql, params = segments.condition_sql(queries._d(), queries._q("attributes"), rule)
        assert _members(typed_units, sql, params) == _expected([rule]), rule
