"""Exposures: buffered on the hot path, upserted in bulk, nothing lost, earliest wins."""
from __future__ import annotations

import json
import unittest.mock
import uuid

import pytest

from assignment import exposures, services, tasks
from assignment.models import Exposure
from experiments.models import Override

URL = "/api/v1/assignments"


class Killed(BaseException):
    """A process killed mid-flush: no ``except Exception`` handler runs."""


def post(client, body):
    return client.post(URL, data=json.dumps(body), content_type="application/json")


def enrolled_units(client, key, n, attrs=None):
    """Unit ids that the API enrols in ``key`` (each call queues an exposure)."""
    found = []
    for i in range(1000):
        body = post(client, {"unit_id": f"u-{i}", "attributes": attrs or {}, "experiments": [key]}).json()
        if body["assignments"][0]["in_experiment"]:
            found.append((f"u-{i}", body["assignments"][0]["variant"]))
            if len(found) == n:
                return found
    raise AssertionError("not enough enrolled units")


@pytest.fixture
def experiment(make_experiment, settings):
    settings.ASSIGNMENT_EXPOSURE_BUFFER_SIZE = 10_000
    settings.ASSIGNMENT_EXPOSURE_BUFFER_SECONDS = 3600
    return make_experiment("checkout-button", traffic_allocation=50)


def test_enrolled_answers_are_recorded_after_a_flush(client_api, experiment):
    units = enrolled_units(client_api, "checkout-button", 5, {"country": "CN"})
    assert Exposure.objects.count() == 0  # buffered, not written on the request
    assert services.flush_exposures() >= 5
    rows = {e.unit_id: e for e in Exposure.objects.select_related("variant")}
    assert set(rows) == {u for u, _ in units}  # units outside the allocation are not recorded
    for unit, variant in units:
        assert rows[unit].variant.key == variant
        assert rows[unit].attributes == {"country": "CN"}
        assert rows[unit].first_seen <= rows[unit].last_seen


def test_repeat_requests_collapse_into_one_row_keeping_first_seen(client_api, experiment):
    [(unit, _)] = enrolled_units(client_api, "checkout-button", 1, {"country": "CN"})
    services.flush_exposures()
    first = Exposure.objects.get(unit_id=unit)
    post(client_api, {"unit_id": unit, "attributes": {"country": "US"}})
    services.flush_exposures()
    row = Exposure.objects.get(unit_id=unit)
    assert Exposure.objects.filter(unit_id=unit).count() == 1
    assert row.first_seen == first.first_seen
    assert row.last_seen > first.last_seen
    assert row.attributes == {"country": "CN"}  # attributes at the first exposure


def test_upsert_keeps_earliest_variant_and_attributes_and_latest_last_seen(experiment):
    control, green = (experiment.variants.get(key=k).pk for k in ("control", "green"))
    exp = experiment.pk
    exposures.upsert([(exp, green, "u", 2000.0, {"at": 2000})])
    exposures.upsert([(exp, control, "u", 3000.0, {"at": 3000}), (exp, control, "u", 1500.0, {"at": 1500})])
    exposures.upsert([(exp, green, "u", 1800.0, {"at": 1800}), (exp, green, "u", 9000.0, {"at": 9000})])
    exposures.upsert([(exp, green, "u", 1500.0, {"at": "replay"})])  # replaying is harmless
    row = Exposure.objects.get(unit_id="u")
    assert row.first_seen.timestamp() == 1500.0
    assert row.variant_id == control
    assert row.attributes == {"at": 1500}
    assert row.last_seen.timestamp() == 9000.0


def test_upsert_handles_large_batches_and_skips_unknown_ids(experiment):
    green = experiment.variants.get(key="green").pk
    items = [(experiment.pk, green, f"u-{i}", 1000.0 + i, {}) for i in range(2500)]
    items.append((experiment.pk, 999_999, "ghost", 1.0, {}))  # variant deleted since
    items.append((999_999, green, "ghost", 1.0, {}))  # variant of another experiment
    assert exposures.upsert(items) == 2500
    assert Exposure.objects.count() == 2500


def test_overrides_and_fallbacks_are_not_recorded(client_api, experiment):
    Override.objects.create(experiment=experiment, unit_id="qa", variant=experiment.variants.get(key="green"))
    assert post(client_api, {"unit_id": "qa"}).json()["assignments"][0]["reason"] == "override"
    outside = None
    for i in range(200):
        answer = post(client_api, {"unit_id": f"x-{i}"}).json()["assignments"][0]
        if answer["reason"] == "traffic_allocation":
            outside = f"x-{i}"
            break
    services.flush_exposures()
    assert not Exposure.objects.filter(unit_id__in=["qa", outside]).exists()


def test_buffer_flushes_itself_at_its_size(client_api, experiment, settings):
    settings.ASSIGNMENT_EXPOSURE_BUFFER_SIZE = 3
    enrolled_units(client_api, "checkout-button", 3)
    assert Exposure.objects.count() == 3
    assert len(exposures.local_buffer) == 0


def test_buffer_flushes_itself_at_its_age(client_api, experiment, settings):
    settings.ASSIGNMENT_EXPOSURE_BUFFER_SECONDS = 0
    enrolled_units(client_api, "checkout-button", 1)
    assert Exposure.objects.count() == 1


def test_the_celery_task_flushes(client_api, experiment):
    enrolled_units(client_api, "checkout-button", 2)
    tasks.flush_exposures.delay()  # eager in the embedded mode
    assert Exposure.objects.count() == 2


def test_failed_write_keeps_the_items(client_api, experiment, monkeypatch):
    enrolled_units(client_api, "checkout-button", 2)

    def broken(items):
        raise RuntimeError("database down")

    monkeypatch.setattr(exposures, "upsert", broken)
    with pytest.raises(RuntimeError):
        services.flush_exposures()
    assert len(exposures.local_buffer) == 2
    monkeypatch.undo()
    services.flush_exposures()
    assert Exposure.objects.count() == 2


def test_buffer_is_bounded(settings):
    settings.ASSIGNMENT_EXPOSURE_BUFFER_MAX = 10
    before = exposures.local_buffer.dropped
    exposures.local_buffer.extend([(1, 1, f"u-{i}", float(i), {}) for i in range(15)])
    assert len(exposures.local_buffer) == 10
    assert exposures.local_buffer.dropped - before == 5
    assert exposures.local_buffer.take()[0][2] == "u-5"  # the oldest went first


def test_erase_unit(client_api, experiment):
    (flushed, _), (buffered, _) = enrolled_units(client_api, "checkout-button", 2)
    exposures.flush_local()
    Exposure.objects.filter(unit_id=buffered).delete()
    post(client_api, {"unit_id": buffered})  # queued again, not yet written
    result = services.erase_unit(buffered)
    assert result["buffered_discarded"] == 1
    assert not Exposure.objects.filter(unit_id=buffered).exists()
    assert services.erase_unit(flushed)["exposures_deleted"] == 1
    assert not Exposure.objects.exists()


# --- production mode: the shared Redis queue ------------------------------------------------------

@pytest.fixture
def redis_mode(settings, experiment):
    from tests.conftest import TEST_REDIS_URL

    settings.REDIS_URL = TEST_REDIS_URL
    settings.ASSIGNMENT_REDIS_PREFIX = f"{{test-{uuid.uuid4().hex[:8]}}}"
    settings.ASSIGNMENT_REDIS_BATCH_SECONDS = 0  # push on every answer unless a test batches
    client = exposures.redis_client()
    yield client
    for key in client.scan_iter(f"{settings.ASSIGNMENT_REDIS_PREFIX}*"):
        client.delete(key)


def _keys(client, settings):
    return sorted(k.decode() for k in client.scan_iter(f"{settings.ASSIGNMENT_REDIS_PREFIX}*"))


@pytest.mark.redis
def test_redis_queue_then_flush(client_api, redis_mode, settings):
    enrolled_units(client_api, "checkout-button", 3)
    queue = exposures._keys()[0]
    assert redis_mode.llen(queue) == 3
    assert len(exposures.local_buffer) == 0
    assert services.flush_exposures() == 3
    assert Exposure.objects.count() == 3
    assert _keys(redis_mode, settings) == []  # queue, processing list and registry all gone


@pytest.mark.redis
def test_flusher_crash_before_commit_loses_nothing(client_api, redis_mode, settings, monkeypatch):
    enrolled_units(client_api, "checkout-button", 3)

    def crash(items):
        raise Killed("worker killed mid-flush")  # a kill runs no exception handler

    monkeypatch.setattr(exposures, "upsert", crash)
    with pytest.raises(Killed):
        services.flush_exposures()
    monkeypatch.undo()
    leftovers = [k for k in _keys(redis_mode, settings) if ":processing:" in k]
    assert len(leftovers) == 1 and redis_mode.llen(leftovers[0]) == 3
    # New exposures keep flowing meanwhile; the live flush leaves a fresh processing list alone.
    enrolled_units(client_api, "checkout-button", 4)
    settings.ASSIGNMENT_EXPOSURE_LEASE_SECONDS = 3600
    services.flush_exposures()
    assert redis_mode.llen(leftovers[0]) == 3
    settings.ASSIGNMENT_EXPOSURE_LEASE_SECONDS = 0  # the dead flusher's lease has expired
    assert services.flush_exposures() == 3
    assert Exposure.objects.count() == 4  # 3 + 4 answers over 4 distinct units
    assert _keys(redis_mode, settings) == []


@pytest.mark.redis
def test_crash_after_commit_replays_harmlessly(client_api, redis_mode, settings, monkeypatch):
    enrolled_units(client_api, "checkout-button", 2)
    monkeypatch.setattr(redis_mode, "delete", lambda *names: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        services.flush_exposures()
    monkeypatch.undo()
    before = {e.unit_id: (e.first_seen, e.variant_id) for e in Exposure.objects.all()}
    assert len(before) == 2
    settings.ASSIGNMENT_EXPOSURE_LEASE_SECONDS = 0
    assert services.flush_exposures() == 2  # replayed
    assert {e.unit_id: (e.first_seen, e.variant_id) for e in Exposure.objects.all()} == before


@pytest.mark.redis
def test_redis_unreachable_degrades_to_the_local_buffer(client_api, redis_mode, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = None
    for i in range(100):
        response = post(client_api, {"unit_id": f"u-{i}"})
        if response.json()["assignments"][0]["in_experiment"]:
            break
    assert response.status_code == 200
    assert response.json()["degraded"] == ["exposures-local-buffer"]
    assert response["X-Degraded"] == "exposures-local-buffer"
    assert len(exposures.local_buffer) == 1
    services.flush_exposures()  # the database write works; Redis errors are tolerated
    assert Exposure.objects.count() == 1


@pytest.mark.redis
def test_local_buffer_drains_to_redis_when_it_is_back(client_api, redis_mode, settings):
    exposures.local_buffer.extend([(1, 1, "from-outage", 1.0, {})])
    enrolled_units(client_api, "checkout-button", 1)
    assert len(exposures.local_buffer) == 0
    assert redis_mode.llen(exposures._keys()[0]) == 1  # leftovers and the answer: one element
    assert services.flush_exposures() == 2


@pytest.mark.redis
def test_erase_unit_reaches_the_redis_queue(client_api, redis_mode):
    [(unit, _)] = enrolled_units(client_api, "checkout-button", 1)
    assert services.erase_unit(unit)["exposures_deleted"] == 1
    assert not Exposure.objects.exists()


@pytest.mark.redis
def test_batched_pushes_share_one_round_trip(client_api, redis_mode, settings):
    settings.ASSIGNMENT_REDIS_BATCH_SECONDS = 3600
    settings.ASSIGNMENT_REDIS_BATCH_SIZE = 3
    queue = exposures._keys()[0]
    enrolled_units(client_api, "checkout-button", 2)
    assert redis_mode.llen(queue) == 0 and len(exposures.outbox) == 2
    enrolled_units(client_api, "checkout-button", 3)  # the 3rd item fills the batch
    assert redis_mode.llen(queue) == 1 and len(exposures.outbox) == 2  # one element per batch
    assert services.flush_exposures() == 5  # the flush pushes the open batch first
    assert Exposure.objects.count() == 3  # u-0.. repeated: 5 answers, 3 distinct units


@pytest.mark.redis
def test_quiet_process_pushes_its_batch_in_the_background(client_api, redis_mode, settings):
    import time

    settings.ASSIGNMENT_REDIS_BATCH_SECONDS = 0.05
    enrolled_units(client_api, "checkout-button", 1)
    queue = exposures._keys()[0]
    deadline = time.monotonic() + 5
    while redis_mode.llen(queue) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert redis_mode.llen(queue) == 1
    assert len(exposures.outbox) == 0


@pytest.mark.redis
def test_batch_failing_to_push_is_kept_in_process(client_api, redis_mode, settings):
    settings.ASSIGNMENT_REDIS_BATCH_SECONDS = 3600
    enrolled_units(client_api, "checkout-button", 2)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert exposures.drain_outbox() == 2
    assert len(exposures.local_buffer) == 2  # not lost: written by the next local flush
    services.flush_exposures()
    assert Exposure.objects.count() == 2


def test_batch_encoding_matches_the_message_format():
    shared = {"country": "CN", "n": [1, "ü"]}
    items = [(1, 2, 'u-"ü', 1234.5, shared, 1), (3, 4, 'u-"ü', 1234.5, shared, 2), (5, 6, "v", 1.0, {}, 1)]
    encoded = exposures._encode_all(items)
    assert encoded == [json.dumps(list(i), separators=(",", ":"), ensure_ascii=False) for i in items]
    assert [exposures._decode(e.encode()) for e in encoded] == items
    # Messages queued before phases existed have no phase: they are phase 1.
    assert exposures._decode(b'[5,6,"v",1.0,{}]') == (5, 6, "v", 1.0, {}, 1)
    assert exposures._encode_all([(5, 6, "v", 1.0, {})]) == ['[5,6,"v",1.0,{},1]']


@pytest.mark.redis
def test_outage_found_by_a_batched_push_degrades_that_answer_and_the_next(client_api, redis_mode, settings):
    settings.ASSIGNMENT_REDIS_BATCH_SECONDS = 3600
    settings.ASSIGNMENT_REDIS_BATCH_SIZE = 1  # every answer fills a batch
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    answers = [post(client_api, {"unit_id": f"u-{i}"}).json() for i in range(30)]
    enrolled = [a for a in answers if a["assignments"][0]["in_experiment"]]
    assert len(enrolled) >= 2
    assert all(a.get("degraded") == ["exposures-local-buffer"] for a in enrolled)
    assert len(exposures.local_buffer) == len(enrolled)


# --- poison items never block the others ------------------------------------------------------

def _items(experiment, *units, attributes=None, ts=1_000.0):
    green = experiment.variants.get(key="green").pk
    return [(experiment.pk, green, unit, ts, dict(attributes or {})) for unit in units]


def _report_works(experiment):
    from analysis import reports

    snapshot = reports.compute_report(experiment.key)
    assert sum(snapshot.payload["srm"]["counts"].values()) == Exposure.objects.filter(experiment=experiment).count()


def test_poison_items_between_good_ones_are_set_aside_and_the_rest_written(experiment):
    from assignment.models import RejectedExposure

    good = _items(experiment, "good-1", "good-2")
    infinite = _items(experiment, "infinite", attributes={"x": float("inf"), "y": float("nan"), "c": "CN"})
    unwritable = [*_items(experiment, "x" * 300), *_items(experiment, "bad-\ud800"), (experiment.pk, 0, "u", 1.0, {}),
                  *_items(experiment, "too-late", ts=1e300)]
    exposures.local_buffer.extend([good[0], infinite[0], *unwritable, good[1]])
    assert services.flush_exposures() == 7
    assert len(exposures.local_buffer) == 0  # nothing put back: the next flush is not blocked
    rows = dict(Exposure.objects.values_list("unit_id", "attributes"))
    assert rows == {"good-1": {}, "good-2": {}, "infinite": {"x": None, "y": None, "c": "CN"}}
    rejected = list(RejectedExposure.objects.order_by("id"))
    assert len(rejected) == 4 and all(r.reason and r.item.isascii() for r in rejected)
    assert "unit id" in rejected[0].reason and "variant id" in rejected[2].reason and "time" in rejected[3].reason
    exposures.local_buffer.extend(_items(experiment, "later"))
    services.flush_exposures()
    assert Exposure.objects.filter(unit_id="later").exists()
    _report_works(experiment)


def test_an_item_the_database_refuses_is_isolated_by_bisection(experiment, monkeypatch):
    """Whatever the cleaning misses, the database's refusal of one item costs only that item."""
    from assignment.models import RejectedExposure

    monkeypatch.setattr(exposures, "clean", lambda item, memo=None: (item, None))  # no cleaning at all
    items = _items(experiment, *(f"u-{i}" for i in range(40)))
    items[17] = _items(experiment, "poison", attributes={"x": float("inf")})[0]
    exposures.local_buffer.extend(items)
    assert services.flush_exposures() == 40
    assert Exposure.objects.count() == 39 and not Exposure.objects.filter(unit_id="poison").exists()
    [rejected] = RejectedExposure.objects.all()
    assert rejected.reason.startswith("refused by the database") and "Infinity" in rejected.item
    assert len(exposures.local_buffer) == 0


def test_an_outage_is_not_mistaken_for_poison(experiment, monkeypatch):
    from django.db import OperationalError

    from assignment.models import RejectedExposure

    exposures.local_buffer.extend(_items(experiment, "a", "b"))
    monkeypatch.setattr(exposures, "upsert", lambda items: (_ for _ in ()).throw(OperationalError("down")))
    with pytest.raises(OperationalError):
        services.flush_exposures()
    assert len(exposures.local_buffer) == 2 and not RejectedExposure.objects.exists()


@pytest.mark.redis
def test_poison_messages_in_the_redis_queue_do_not_block_their_batch(client_api, redis_mode):
    """Production: a batch holding a poison item is written (but for that item) and not retried forever."""
    from assignment.models import RejectedExposure

    experiment = Exposure._meta.apps.get_model("experiments", "Experiment").objects.get(key="checkout-button")
    queue = exposures._keys()[0]
    good = _items(experiment, "good-1", "good-2")
    poison = _items(experiment, "infinite", attributes={"x": float("inf")})  # encodes as Infinity
    redis_mode.rpush(queue, *exposures._encode_all([good[0], *poison]), b"not json", b"[1,2]",
                     *exposures._encode_all(_items(experiment, "nul\x00unit") + [good[1]]))
    assert services.flush_exposures() == 6
    assert dict(Exposure.objects.values_list("unit_id", "attributes")) == {
        "good-1": {}, "good-2": {}, "infinite": {"x": None}}
    assert RejectedExposure.objects.count() == 3  # two malformed messages and the NUL unit id
    assert _keys(redis_mode, exposures.settings) == []  # queue and processing lists all gone
    assert services.flush_exposures() == 0
    _report_works(experiment)


@pytest.mark.redis
def test_unencodable_attributes_do_not_take_redis_down(client_api, redis_mode):
    experiment = Exposure._meta.apps.get_model("experiments", "Experiment").objects.get(key="checkout-button")
    assert exposures.record(_items(experiment, "u", attributes={"s": "\udc80"})) == ()  # not degraded
    assert redis_mode.llen(exposures._keys()[0]) == 1
    services.flush_exposures()
    assert Exposure.objects.get(unit_id="u").attributes == {}


@pytest.mark.redis
def test_a_failed_flush_is_retried_by_the_next_one_not_after_the_lease(client_api, redis_mode, settings, monkeypatch):
    from django.db import OperationalError

    enrolled_units(client_api, "checkout-button", 2)
    monkeypatch.setattr(exposures, "upsert", lambda items: (_ for _ in ()).throw(OperationalError("down")))
    with pytest.raises(OperationalError):
        services.flush_exposures()
    monkeypatch.undo()
    settings.ASSIGNMENT_EXPOSURE_LEASE_SECONDS = 3600
    assert services.flush_exposures() == 2
    assert Exposure.objects.count() == 2


def test_the_sigterm_flush_leaves_gunicorn_and_celery_handlers_alone():
    """gunicorn and Celery end the process normally on SIGTERM (atexit runs); theirs stay."""
    import signal

    previous = signal.getsignal(signal.SIGTERM)

    def theirs(signum, frame):  # pragma: no cover - never called
        pass

    try:
        signal.signal(signal.SIGTERM, theirs)
        assert exposures.install_sigterm_flush() is False
        assert signal.getsignal(signal.SIGTERM) is theirs
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert exposures.install_sigterm_flush() is True
        assert signal.getsignal(signal.SIGTERM) is exposures._on_sigterm
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_batch_message_round_trip_and_the_single_item_format_is_still_read():
    """One element per pushed batch; elements queued one item each (before the upgrade) decode too."""
    shared = {"country": "CN", "n": [1, "ü"]}
    items = [(1, 2, 'u-"ü', 1234.5, shared, 1), (3, 4, 'u-"ü', 1234.5, shared, 2), (5, 6, "v", 1.0, {}, 1)]
    batch = exposures._encode_batch(items)
    assert json.loads(batch) == [list(i) for i in items]
    assert exposures._decode_message(batch.encode()) == (items, [])
    assert exposures._decode_message(b'[5,6,"v",1.0,{}]') == ([(5, 6, "v", 1.0, {}, 1)], [])  # old, no phase
    assert exposures._decode_message(b'[5,6,"v",1.0,{},3]') == ([(5, 6, "v", 1.0, {}, 3)], [])
    for bad in (b"not json", b"[1,2]", b"[]", b'{"a":1}'):
        assert exposures._decode_message(bad) == ([], [(bad, "malformed queue message")])
    # A malformed item inside a batch is set aside alone (as a tuple, so its unit can be hashed).
    good, poison = exposures._decode_message(b'[[5,6,"v",1.0,{},1],[7,"x","w",2.0,{},1]]')
    assert good == [(5, 6, "v", 1.0, {}, 1)]
    assert poison == [((7, "x", "w", 2.0, {}, 1), "malformed queue message")]


@pytest.mark.redis
def test_queue_mixing_old_single_items_and_batches_with_poison_is_flushed(client_api, redis_mode, settings):
    """After an upgrade the queue holds both formats; poison inside a batch blocks nobody, and
    large batches are written in chunks of the configured size."""
    from assignment import erasure
    from assignment.models import RejectedExposure

    experiment = Exposure._meta.apps.get_model("experiments", "Experiment").objects.get(key="checkout-button")
    settings.ASSIGNMENT_EXPOSURE_FLUSH_CHUNK = 2
    written = []
    real_write = exposures.write

    def counting_write(items, rejected=()):
        written.append(len(items))
        return real_write(items, rejected=rejected)

    queue = exposures._keys()[0]
    old = _items(experiment, "old-1")
    batch = _items(experiment, "b-1", "b-2", "b-3", "b-4", "b-5")
    bad = list(_items(experiment, "bad-unit")[0])
    bad[exposures.VARIANT] = "not-an-id"
    redis_mode.rpush(queue, *exposures._encode_all(old), exposures._encode_batch(batch),
                     exposures._encode_batch(_items(experiment, "b-6")),
                     "[" + exposures._encode_all(_items(experiment, "b-7"))[0] + "," + json.dumps(bad) + "]")
    with unittest.mock.patch.object(exposures, "write", counting_write):
        assert services.flush_exposures() == 9
    assert sorted(Exposure.objects.values_list("unit_id", flat=True)) == [
        "b-1", "b-2", "b-3", "b-4", "b-5", "b-6", "b-7", "old-1"]
    assert max(written) <= 2
    rejected = RejectedExposure.objects.get()
    assert rejected.unit_hash == erasure.unit_hash("bad-unit")
    assert _keys(redis_mode, settings) == []
