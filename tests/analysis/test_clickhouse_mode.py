"""ANALYTICS_BACKEND=clickhouse beyond the stream: what used to read or write Django's event table
(the admin's "never received" warning, ``manage.py simulate`` and its ``--reset``) uses ClickHouse.

Needs Redis (marker ``redis``, the ``ch`` fixture's stream) and chdb.
"""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from analysis import clickhouse, privacy, queries, selectors
from analysis.admin import silent_metrics
from analysis.models import Event
from experiments.models import Metric

from .reporting import make_experiment, populate, recent_end
from .test_clickhouse_stream import ch  # noqa: F401 - the fixture
from .test_dialects import _importable, assert_same_tables

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not _importable("chdb"), reason="chdb is not installed (clickhouse extra)"),
]


def _rows(client, sql: str) -> int:
    return client.query(sql).result_rows[0][0]


def test_simulate_writes_clickhouse_and_gives_the_same_statistics_as_django(ch, settings):  # noqa: F811
    experiment = make_experiment()
    end = recent_end()
    settings.ANALYTICS_BACKEND = "django"
    reference = populate(experiment, units=600, seed=11, end=end)
    want = queries.metric_statistics(experiment)
    django_events = Event.objects.count()
    assert reference.events_written == django_events > 0
    Event.objects.all().delete()  # ClickHouse mode must not need them

    settings.ANALYTICS_BACKEND = "clickhouse"
    first = populate(experiment, units=600, seed=11, end=end)
    assert first.events_written == django_events
    assert _rows(ch, 'SELECT count() FROM "analysis_event" FINAL') == django_events
    assert _rows(ch, 'SELECT count() FROM "assignment_exposure" FINAL') == 600
    assert Event.objects.count() == 0  # nothing went to Django's table
    assert_same_tables(queries.metric_statistics(experiment), want)

    again = populate(experiment, units=600, seed=11, end=end)  # deterministic ids: nothing new
    assert again.events_written == 0
    assert_same_tables(queries.metric_statistics(experiment), want)

    unit = next(u for u in (f"sim-checkout-{i:06d}" for i in range(600))
                if _rows(ch, f"SELECT count() FROM \"analysis_event\" WHERE unit_id = '{u}'"))
    erased = _rows(ch, f"SELECT count() FROM \"analysis_event\" FINAL WHERE unit_id = '{unit}'")
    privacy.erase_unit(unit)
    populate(experiment, units=600, seed=11, end=end)  # an erased unit is not simulated back
    assert _rows(ch, f"SELECT count() FROM \"analysis_event\" WHERE unit_id = '{unit}'") == 0

    out = io.StringIO()
    call_command("simulate", "--experiment", "checkout", "--units", "100", "--reset", "--no-report",
                 "--no-progress", "--end", end.isoformat(), stdout=out)
    assert f"{django_events - erased} events" in out.getvalue()  # what --reset deleted, counted in ClickHouse
    assert _rows(ch, "SELECT count() FROM \"assignment_exposure\" FINAL WHERE startsWith(unit_id, 'sim-')") == 100
    smaller = _rows(ch, "SELECT count() FROM \"analysis_event\" FINAL WHERE startsWith(unit_id, 'sim-')")
    assert 0 < smaller < django_events


def test_the_never_received_warning_reads_clickhouse(ch, settings):  # noqa: F811
    purchase = Metric.objects.create(key="m-purchase", name="Purchase", event="purchase")
    ratio = Metric.objects.create(key="m-aov", name="AOV", kind="ratio", event="checkout",
                                  denominator_event="visit")
    Event.objects.create(event_id="d1", unit_id="u1", event="visit", timestamp=recent_end())  # Django's: ignored
    assert selectors.received_event_names(["purchase", "checkout", "visit"]) == set()
    ch.raw_insert("analysis_event", clickhouse.EVENT_COLUMNS,
                  '["e1","u1","purchase",null,"2026-11-30 10:00:00.000000","{}","2026-11-30 10:00:00.000000"]',
                  fmt="JSONCompactEachRow")
    assert selectors.received_event_names(["purchase", "checkout", "visit", "purchase"]) == {"purchase"}
    assert silent_metrics([purchase, ratio]) == [{"metric": "m-aov", "event": "checkout"},
                                                 {"metric": "m-aov", "event": "visit"}]


def test_the_warning_is_left_out_not_wrong_when_clickhouse_cannot_answer(ch, settings, admin_client):  # noqa: F811
    metric = Metric.objects.create(key="m-purchase", name="Purchase", event="purchase")
    ch.command('DROP TABLE "analysis_event"')  # the query fails: no table
    assert selectors.received_event_names(["purchase"]) is None
    assert silent_metrics([metric]) == []
    page = admin_client.get("/admin/experiments/metric/")
    assert page.status_code == 200 and "never received" not in page.content.decode()
    page = admin_client.get("/admin/analysis/event/")
    assert page.status_code == 200 and "Events are stored in ClickHouse" in page.content.decode()


def test_clickhouse_init_refuses_an_events_table_without_the_version(ch, settings):  # noqa: F811
    from django.core.management import CommandError

    ch.command('DROP TABLE "analysis_event"')
    ch.command('CREATE TABLE "analysis_event" (event_id String, unit_id String, event String, '
               "value Nullable(Float64), timestamp DateTime64(6, 'UTC'), properties String, "
               "received_at DateTime64(6, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY event_id")
    with pytest.raises(CommandError, match="predates the version column"):
        call_command("clickhouse_init", stdout=io.StringIO())
    ch.command('DROP TABLE "analysis_event"')
    call_command("clickhouse_init", stdout=io.StringIO())  # a fresh table passes
