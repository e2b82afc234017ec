"""Event ingestion: validation, idempotency, partial rejection, the endpoint and its failures."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.db.backends.base.base import BaseDatabaseWrapper

from analysis import ingestion
from analysis.models import Event

URL = "/api/v1/events"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def ev(i=0, **overrides):
    base = {"event_id": f"evt-{i}", "unit_id": f"u-{i % 7}", "event": "purchase", "value": 1.5 * i,
            "timestamp": "2024-06-01T10:00:00Z", "properties": {"currency": "EUR", "n": i}}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def post(client, body, **extra):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(URL, data=data, content_type=extra.pop("content_type", "application/json"), **extra)


# --- the service ---------------------------------------------------------------------------------


def test_valid_events_are_stored_with_their_fields(db):
    result = ingestion.ingest_events([ev(1), ev(2, value=None, properties=None, timestamp="2026-11-23T23:30:00.123456+02:00")], now=NOW)
    assert result.as_dict() == {"accepted": 2, "duplicates": 0, "rejected": []}
    first = Event.objects.get(event_id="evt-1")
    assert (first.unit_id, first.event, first.value) == ("u-1", "purchase", 1.5)
    assert first.timestamp == datetime(2024, 6, 1, 10, tzinfo=UTC)
    assert first.properties == {"currency": "EUR", "n": 1}
    assert first.received_at == NOW
    second = Event.objects.get(event_id="evt-2")
    assert second.value is None and second.properties == {}
    assert second.timestamp == datetime(2026, 11, 23, 21, 30, 0, 123456, tzinfo=UTC)


def test_a_retried_batch_is_stored_once(db):
    batch = [ev(i) for i in range(50)]
    assert ingestion.ingest_events(batch, now=NOW).as_dict() == {"accepted": 50, "duplicates": 0, "rejected": []}
    assert ingestion.ingest_events(batch, now=NOW).as_dict() == {"accepted": 0, "duplicates": 50, "rejected": []}
    overlapping = [ev(i) for i in range(40, 60)]
    assert ingestion.ingest_events(overlapping, now=NOW).as_dict() == {"accepted": 10, "duplicates": 10, "rejected": []}
    assert Event.objects.count() == 60


def test_duplicates_within_a_batch_count_as_duplicates(db):
    batch = [ev(1), ev(2), ev(1, value=99.0), ev(1), ev(3)]
    result = ingestion.ingest_events(batch, now=NOW)
    assert result.as_dict() == {"accepted": 3, "duplicates": 2, "rejected": []}
    assert Event.objects.get(event_id="evt-1").value == 1.5  # the first one wins


def test_valid_events_are_kept_when_others_are_rejected(db):
    batch = [ev(0), ev(1, event="bad name"), ev(2), "not an object", ev(4, value="12")]
    result = ingestion.ingest_events(batch, now=NOW)
    assert result.accepted == 2 and result.duplicates == 0
    assert result.rejected == [
        {"index": 1, "errors": {"event": [ingestion.EVENT_NAME]}},
        {"index": 3, "errors": {"non_field_errors": [ingestion.NOT_AN_EVENT]}},
        {"index": 4, "errors": {"value": [ingestion.NOT_A_NUMBER]}},
    ]
    assert set(Event.objects.values_list("event_id", flat=True)) == {"evt-0", "evt-2"}


def test_an_invalid_event_does_not_count_as_a_duplicate_of_a_valid_one(db):
    result = ingestion.ingest_events([ev(1, timestamp="nope"), ev(1)], now=NOW)
    assert result.as_dict()["accepted"] == 1 and result.duplicates == 0 and len(result.rejected) == 1


@pytest.mark.parametrize(("overrides", "field", "message"), [
    ({"event_id": ...}, "event_id", ingestion.REQUIRED),
    ({"event_id": ""}, "event_id", ingestion.ID_LENGTH),
    ({"event_id": "   "}, "event_id", ingestion.ID_LENGTH),
    ({"event_id": "x" * 257}, "event_id", ingestion.ID_LENGTH),
    ({"event_id": 12}, "event_id", ingestion.NOT_A_STRING),
    ({"event_id": "a\x00b"}, "event_id", ingestion.BAD_TEXT),
    ({"unit_id": "\ud800"}, "unit_id", ingestion.BAD_TEXT),
    ({"unit_id": None}, "unit_id", ingestion.REQUIRED),
    ({"unit_id": ["u"]}, "unit_id", ingestion.NOT_A_STRING),
    ({"event": ...}, "event", ingestion.REQUIRED),
    ({"event": "purchase\n"}, "event", ingestion.EVENT_NAME),
    ({"event": "_purchase"}, "event", ingestion.EVENT_NAME),
    ({"event": "a" * 129}, "event", ingestion.EVENT_NAME),
    ({"event": "päy"}, "event", ingestion.EVENT_NAME),
    ({"value": float("nan")}, "value", ingestion.NOT_A_NUMBER),
    ({"value": float("inf")}, "value", ingestion.NOT_A_NUMBER),
    ({"value": 10**400}, "value", ingestion.NOT_A_NUMBER),
    ({"value": True}, "value", ingestion.NOT_A_NUMBER),
    ({"value": "3"}, "value", ingestion.NOT_A_NUMBER),
    ({"timestamp": "yesterday"}, "timestamp", ingestion.BAD_TIMESTAMP),
    ({"timestamp": 1764000000}, "timestamp", ingestion.BAD_TIMESTAMP),
    ({"timestamp": "2026-11-24"}, "timestamp", ingestion.BAD_TIMESTAMP),
    ({"timestamp": "2026-11-24T25:00:00Z"}, "timestamp", ingestion.BAD_TIMESTAMP),
    ({"timestamp": "1999-12-31T23:59:59Z"}, "timestamp", ingestion.TOO_OLD),
    ({"timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp", ingestion.TOO_OLD),
    ({"timestamp": "2026-11-25T12:00:01Z"}, "timestamp", ingestion.TOO_NEW),
    ({"timestamp": "2026-11-24T10:00:00Z" + " " * 60}, "timestamp", ingestion.BAD_TIMESTAMP),
    ({"properties": []}, "properties", ingestion.NOT_AN_OBJECT),
    ({"properties": "{}"}, "properties", ingestion.NOT_AN_OBJECT),
    ({"properties": {"nested": {"a": 1}}}, "properties", ingestion.PROPERTY_VALUE),
    ({"properties": {"list": [1]}}, "properties", ingestion.PROPERTY_VALUE),
    ({"properties": {"x": "y" * 1025}}, "properties", ingestion.PROPERTY_VALUE),
    ({"properties": {"x": "\x00"}}, "properties", ingestion.PROPERTY_VALUE),
    ({"properties": {"x": float("nan")}}, "properties", ingestion.PROPERTY_VALUE),
    ({"properties": {"": 1}}, "properties", ingestion.PROPERTY_KEY),
    ({"properties": {"k" * 129: 1}}, "properties", ingestion.PROPERTY_KEY),
    ({"properties": {f"k{i}": i for i in range(51)}}, "properties", ingestion.TOO_MANY_PROPERTIES),
    ({"properties": {f"k{i}": "v" * 1000 for i in range(9)}}, "properties", ingestion.PROPERTIES_SIZE),
    ({"valeu": 3}, "valeu", ingestion.UNKNOWN_FIELD),
])
def test_validation_names_the_field(overrides, field, message):
    row, errors = ingestion.validate_event(ev(1, **overrides), NOW)
    assert row is None
    assert errors[field] == [message]


@pytest.mark.parametrize(("timestamp", "expected"), [
    ("2026-11-24T10:00:00Z", datetime(2026, 11, 24, 10, tzinfo=UTC)),
    ("2026-11-24T10:00:00", datetime(2026, 11, 24, 10, tzinfo=UTC)),  # naive: UTC
    ("2026-11-24T11:00:00+01:00", datetime(2026, 11, 24, 10, tzinfo=UTC)),
    ("2000-01-01T00:00:00Z", datetime(2000, 1, 1, tzinfo=UTC)),
    ("2026-11-25T12:00:00Z", datetime(2026, 11, 25, 12, tzinfo=UTC)),  # exactly a day ahead
    ("2026-11-24 10:00:00.5+00:00", datetime(2026, 11, 24, 10, 0, 0, 500000, tzinfo=UTC)),
    (..., NOW),  # omitted: now
    (None, NOW),
])
def test_accepted_timestamps(timestamp, expected):
    row, errors = ingestion.validate_event(ev(1, timestamp=timestamp), NOW)
    assert errors is None
    assert row[4] == expected


def test_accepted_values_and_properties():
    row, errors = ingestion.validate_event(
        ev(1, value=3, properties={"a": None, "b": True, "c": -1.5, "d": "日本", "e": 2**70}), NOW
    )
    assert errors is None
    assert row[3] == 3.0 and type(row[3]) is float
    assert json.loads(row[5]) == {"a": None, "b": True, "c": -1.5, "d": "日本", "e": 2**70}


def test_a_full_batch_is_one_statement(db, django_assert_max_num_queries):
    batch = [ev(i) for i in range(ingestion.MAX_BATCH)]
    # The tombstone lookup (+ the erasure lock on PostgreSQL), the INSERT, savepoint bookkeeping.
    with django_assert_max_num_queries(5):
        result = ingestion.ingest_events(batch, now=NOW)
    assert result.accepted == ingestion.MAX_BATCH
    assert Event.objects.count() == ingestion.MAX_BATCH


# --- the endpoint ---------------------------------------------------------------------------------


@pytest.fixture
def client_api(api_client_for):
    return api_client_for("client")


def test_endpoint_answers_202_with_counts(client_api):
    batch = [ev(0), ev(1), ev(1), ev(3, event="")]
    response = post(client_api, {"events": batch})
    assert response.status_code == 202, response.content
    assert response.json() == {
        "accepted": 2, "duplicates": 1, "rejected": [{"index": 3, "errors": {"event": [ingestion.EVENT_NAME]}}],
    }
    again = post(client_api, {"events": batch}).json()
    assert again["accepted"] == 0 and again["duplicates"] == 3


def test_unknown_field_names_are_echoed_safely(client_api):
    body = '{"events": [{"event_id": "a", "unit_id": "u", "event": "e", "\\ud800x": 1, "\\u0000": 2}]}'
    response = post(client_api, body)
    assert response.status_code == 202, response.content
    [rejected] = response.json()["rejected"]
    assert set(rejected["errors"]) == {"\\ud800x", "\x00"}


def test_an_empty_batch_is_fine(client_api):
    response = post(client_api, {"events": []})
    assert response.status_code == 202
    assert response.json() == {"accepted": 0, "duplicates": 0, "rejected": []}


@pytest.mark.parametrize("body", [
    [ev(1)], {"event": ev(1)}, {"events": ev(1)}, {"events": "x"}, {"events": None}, "null", "3", '"events"',
    b"{not json", b'{"events": [{"value": NaN}]}', b'{"events": [{"value": Infinity}]}', b"\xff\xfe{}", {"events": [ev(i) for i in range(1001)]},
])
def test_a_body_that_is_not_a_batch_is_400(client_api, body):
    response = post(client_api, body)
    assert response.status_code == 400, response.content
    assert isinstance(response.json(), dict)
    assert Event.objects.count() == 0


def test_other_content_types_and_oversized_bodies(client_api, settings):
    response = post(client_api, "events=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and "detail" in response.json()
    settings.API_MAX_BODY_BYTES = 1000
    response = post(client_api, {"events": [ev(i) for i in range(20)]})
    assert response.status_code == 413 and "detail" in response.json()


def test_a_key_is_needed(api_client_for):
    response = post(api_client_for(None), {"events": [ev(1)]})
    assert response.status_code == 401
    assert Event.objects.count() == 0


@pytest.mark.parametrize("scope", ["client", "analyst", "admin"])
def test_every_scope_may_send_events(api_client_for, scope):
    assert post(api_client_for(scope), {"events": [ev(1)]}).status_code == 202


def _driver_failure():
    """Patch the database driver itself to fail as a dropped connection does."""
    if connection.vendor == "postgresql":
        import psycopg

        return mock.patch.object(psycopg.Cursor, "execute", side_effect=psycopg.OperationalError("server closed the connection"))
    import sqlite3

    from django.db.backends.sqlite3.base import SQLiteCursorWrapper

    return mock.patch.object(SQLiteCursorWrapper, "execute", side_effect=sqlite3.OperationalError("disk I/O error"))


def _unreachable():
    return mock.patch.object(BaseDatabaseWrapper, "ensure_connection", side_effect=OperationalError("connection refused"))


@pytest.mark.parametrize("failure", [_unreachable, _driver_failure])
def test_database_down_is_503_with_retry_after(client_api, failure):
    assert post(client_api, {"events": [ev(0)]}).status_code == 202  # warms the key cache
    with failure():
        response = post(client_api, {"events": [ev(1)]})
    assert response.status_code == 503
    assert response["Retry-After"]
    assert "detail" in response.json()
    assert not Event.objects.filter(event_id="evt-1").exists()


def test_big_batch_through_the_endpoint_counts_exactly(client_api):
    batch = [ev(i, properties={f"p{j}": "x" * 20 for j in range(10)}) for i in range(1000)]
    batch[10] = ev(10, timestamp=(datetime.now(UTC) + timedelta(days=2)).isoformat())
    batch[500] = batch[499]
    body = post(client_api, {"events": batch}).json()
    assert body["accepted"] == 998 and body["duplicates"] == 1
    assert [r["index"] for r in body["rejected"]] == [10]
    assert Event.objects.count() == 998


def test_a_batch_without_values_or_properties(db):
    batch = [ev(i, value=..., properties=...) for i in range(3)]
    assert ingestion.ingest_events(batch, now=NOW).accepted == 3
    assert list(Event.objects.values_list("value", "properties").distinct()) == [(None, {})]
