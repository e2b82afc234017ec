"""The Python SDK's compiled fast path: the same answers as the general path and as the
server's evaluator on many units, frozen shared answers, and exposure deduplication in bounded
memory (one exposure per unit and experiment, a snapshot of the attributes)."""
from __future__ import annotations

import datetime
import json
import random
from types import MappingProxyType

import pytest
from abplatform_sdk import Assignment, Client, Evaluator
from abplatform_sdk.evaluator import _EMPTY

from assignment.evaluator import Evaluator as ServerEvaluator

from .conftest import VECTORS

DATA = json.loads(VECTORS.read_text(encoding="utf-8"))


def _variants(*weights):
    return [{"key": f"v{i}", "weight": w, "is_control": i == 0, "payload": {"i": i}}
            for i, w in enumerate(weights)]


def _spec(key, **extra):
    spec = {"key": key, "status": "running", "salt": f"salt-{key}", "phase": 2,
            "traffic_allocation": 100, "layer": None, "layer_range": None, "targeting": [],
            "overrides": {}, "shipped_variant": None, "variants": _variants(50, 50)}
    spec.update(extra)
    return spec


SHAPES = {
    "schema_version": 1, "version": "shapes", "hash": {"algorithm": "sha256", "buckets": 10000},
    "layers": {"l1": {"salt": "l1", "holdout_percent": 10}, "l2": {"salt": "", "holdout_percent": 0}},
    "experiments": [
        _spec("half"),
        _spec("thirds", variants=_variants(33.33, 33.33, 33.34)),  # edges off any coarse step
        _spec("gaps", traffic_allocation=37.5, variants=_variants(20, 30, 50)),
        _spec("none-allocated", traffic_allocation=0),
        _spec("one-variant", variants=_variants(100)),
        _spec("zero-weight", variants=_variants(0, 100, 0)),
        _spec("no-variants", variants=[]),
        _spec("targeted", targeting=[
            {"attribute": "country", "operator": "in", "values": ["CN", "US"]},
            {"attribute": "age", "operator": "gte", "values": [18]}]),
        _spec("one-rule", targeting=[{"attribute": "plan", "operator": "exists", "values": []}]),
        _spec("layered", layer="l1", layer_range=[1000, 5000], targeting=[
            {"attribute": "country", "operator": "not_in", "values": ["FR"]}]),
        _spec("layered-thirds", layer="l2", layer_range=[0, 10000],
              variants=_variants(33.33, 33.33, 33.34)),
        _spec("forced", overrides={"u-1": "v1", "u-2": "nope"}),
        _spec("paused-forced", status="paused", overrides={"u-3": "v1"}),
        _spec("done", status="completed", shipped_variant="v1"),
        _spec("archived", status="archived"),
        _spec("draft", status="draft"),
    ],
}
ATTRIBUTES = [None, {}, {"country": "CN", "age": 30}, {"country": "FR", "age": "40"},
              {"country": "US", "age": 12, "plan": "pro"}, {"plan": None}]


def _answers(document):
    sdk, server = Evaluator(document), ServerEvaluator(document)
    rng = random.Random(7)
    units = [f"u-{i}" for i in range(6)] + [f"unit-{rng.getrandbits(40):x}" for _ in range(400)]
    for key in sdk.keys:
        for unit in units:
            attrs = rng.choice(ATTRIBUTES)
            yield key, unit, attrs, sdk, server


@pytest.mark.parametrize("document", [DATA["document"], DATA["client_document"], SHAPES],
                         ids=["vectors", "client-document", "shapes"])
def test_compiled_assigners_agree_with_the_general_path_and_the_server(document):
    checked = 0
    for key, unit, attrs, sdk, server in _answers(document):
        fast = sdk.evaluate(key, unit, attrs)
        general = sdk._experiments[key].evaluate(unit, attrs or _EMPTY, None)
        assert fast is general or (fast.variant, fast.reason) == (general.variant, general.reason)
        assert (fast.variant, fast.in_experiment, fast.reason, fast.phase) == (
            general.variant, general.in_experiment, general.reason, general.phase)
        if key in server:
            reference = server.evaluate(key, unit, attrs)
            assert (fast.variant, fast.in_experiment, fast.reason) == (
                reference.variant, reference.in_experiment, reference.reason), (key, unit, attrs)
        checked += 1
    assert checked > 1000


def test_every_reason_is_reached_by_the_shapes():
    reasons = {sdk.evaluate(key, unit, attrs).reason for key, unit, attrs, sdk, _ in _answers(SHAPES)}
    assert reasons == {"assigned", "override", "not_running", "targeting", "layer_holdout",
                       "layer_other_experiment", "traffic_allocation", "shipped"}


def test_answers_are_frozen_and_shared():
    evaluator = Evaluator(SHAPES)
    answers = {}
    for i in range(200):
        answer = evaluator.evaluate("half", f"u-{i}")
        assert answers.setdefault(answer.variant, answer) is answer  # one object per variant
    assert set(answers) == {"v0", "v1"}
    with pytest.raises(AttributeError):
        answers["v1"].variant = "v0"
    with pytest.raises(AttributeError):
        del answers["v1"].payload
    import pickle

    copy = pickle.loads(pickle.dumps(answers["v1"]))
    assert copy.as_dict() == answers["v1"].as_dict() and copy.phase == 2


def _client(**kwargs):
    kwargs.setdefault("max_queue", 100_000)
    return Client("http://127.0.0.1:9", "key", bootstrap=SHAPES, start=False, background=False, **kwargs)


def test_unknown_experiment_gives_the_default_without_sharing_it():
    client = _client()
    a = client.assign("nope", "u-1", default="blue")
    b = client.assign("nope", "u-1", default="red")
    assert (a.variant, a.reason, b.variant) == ("blue", "unknown_experiment", "red")


def test_repeated_assigns_log_one_exposure_per_unit_and_experiment():
    client = _client(dedupe_limit=1_000)
    units = [f"u-{i}" for i in range(300)]
    enrolled = {key: {u for u in units if client.assign(key, u).reason == "assigned"}
                for key in ("half", "thirds")}
    for _ in range(5):
        for key in ("half", "thirds"):
            for unit in units:
                client.assign(key, unit, {"country": "CN"})
    queued = [(item[0], item[2]) for item in client._records()]
    assert len(queued) == len(set(queued))  # never twice
    assert set(queued) == {(key, u) for key, us in enrolled.items() for u in us}
    assert client.stats["deduplicated"] == 5 * sum(len(us) for us in enrolled.values())


def test_dedupe_memory_is_bounded():
    limit = 1_000
    client = _client(dedupe_limit=limit)
    enrolled = [u for i in range(20_000) if client.assign("half", u := f"u-{i}").reason == "assigned"]
    assert len(enrolled) > 5 * limit
    assert 0 < len(client._seen["half"]) <= limit  # bounded, however many units came by
    queued = client.queue_size
    assert queued == len(enrolled)  # every new unit queued once
    remembered = [u for u in enrolled if u in client._seen["half"]]
    for unit in remembered:  # the units still remembered are not queued again
        client.assign("half", unit)
    assert client.queue_size == queued
    client.assign("half", enrolled[0])  # a forgotten unit is queued again (the server keeps the first)
    assert client.queue_size == queued + 1


def test_a_new_configuration_forgets_the_dedupe_memory():
    client = _client()
    unit = next(f"u-{i}" for i in range(100) if client.assign("half", f"u-{i}").reason == "assigned")
    client.assign("half", unit)
    assert client.queue_size == 1
    client._install(Evaluator(dict(SHAPES)))  # the same version again: still remembered
    client.assign("half", unit)
    assert client.queue_size == 1
    client._install(Evaluator(dict(SHAPES, version="shapes-2")))  # what refresh() installs
    client.assign("half", unit)
    assert client.queue_size == 2


def test_logging_can_be_switched_off_and_on():
    client = _client()
    units = [f"u-{i}" for i in range(50)]
    client.log_exposures = False
    assert sum(client.assign("half", u).reason == "assigned" for u in units) > 10
    assert client.queue_size == 0
    client.log_exposures = True
    enrolled = sum(client.assign("half", u).reason == "assigned" for u in units)
    assert client.queue_size == enrolled


def test_exposures_keep_a_snapshot_of_the_attributes(monkeypatch):
    client = _client()
    sent = []
    monkeypatch.setattr(client, "_request", lambda method, path, body=None, headers=None: (
        sent.append(json.loads(body)), type("R", (), {"status": 202, "body": b"{}", "headers": {}})())[1])
    attrs = {"country": "CN", "age": 30, "plan": "pro"}
    units = [f"u-{i}" for i in range(40)]
    for unit in units:
        client.assign("targeted", unit, attrs)
    attrs["country"] = "FR"  # changed after the assignment: the exposures keep what it was
    for unit in units:
        client.assign("one-rule", unit, MappingProxyType({"plan": "x", "since": datetime.date(2026, 1, 2)}))
    assert client.flush() is True
    exposures = [e for body in sent for e in body["exposures"]]
    assert exposures
    for exposure in exposures:
        if exposure["experiment"] == "targeted":
            assert exposure["attributes"] == {"country": "CN", "age": 30, "plan": "pro"}
        else:  # a read-only mapping, a value JSON cannot encode: sent as text, not lost
            assert exposure["attributes"] == {"plan": "x", "since": "2026-01-02"}
        assert exposure["phase"] == 2 and exposure["timestamp"].endswith("Z")
    assert client.stats["sent"] == len(exposures)


def test_assignment_is_still_constructible_and_comparable_by_fields():
    answer = Assignment("e", "v", True, "assigned", "d", {}, 3)
    assert answer.records_exposure and answer.as_dict()["variant"] == "v" and answer.phase == 3


def test_wire_timestamps_match_datetime_to_the_millisecond():
    from datetime import UTC, datetime

    from abplatform_sdk.client import _iso

    rng = random.Random(3)
    for ts in [0.0, 1.0005, 1_767_225_599.9995, 1_767_225_600.0] + [rng.uniform(0, 4e9) for _ in range(2000)]:
        got = datetime.strptime(_iso(ts), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs(got.timestamp() - ts) < 0.0011, (ts, _iso(ts))
        assert _iso(ts)[:19] == datetime.fromtimestamp(int(ts * 1000) // 1000, UTC).isoformat()[:19]


def test_records_name_experiment_variant_version_and_phase():
    client = _client()
    answers = {u: client.assign("thirds", u) for u in (f"u-{i}" for i in range(30))}
    client.assign_all("all-1", {"country": "CN"})
    records = client._records()
    assert records[:30] == [("thirds", a.variant, u, records[i][3], None, "shapes", 2)
                            for i, (u, a) in enumerate(answers.items())]
    assert {r[0] for r in records[30:]} >= {"half", "thirds"}
    assert all(r[2] == "all-1" and r[4] == {"country": "CN"} and r[5] == "shapes" for r in records[30:])


def _enrolled(client, key, n, attributes, start=0):
    """Units ``u-{start}..`` enrolled in ``key``, each assigned once with ``attributes``."""
    units = []
    i = start
    while len(units) < n:
        unit = f"u-{i}"
        if client.assign(key, unit, attributes).reason == "assigned":
            units.append(unit)
        i += 1
    return units


def test_a_reused_mapping_is_snapshotted_at_each_call_even_when_changed_in_place():
    client = _client()
    attrs = {"country": "CN", "plan": "pro"}
    for round_, country in enumerate(("CN", "US", "CN")):
        attrs["country"] = country
        _enrolled(client, "half", 5, attrs, start=round_ * 1000)
    attrs["plan"] = "free"  # after the calls: changes nothing queued
    attrs.pop("country")
    got = [r[4] for r in client._records()]
    assert got == [{"country": c, "plan": "pro"} for c in ("CN", "US", "CN") for _ in range(5)]
    # an unchanged plain-text mapping shares one snapshot, never the caller's own object
    assert len({id(a) for a in got[5:10]}) == 1 and all(a is not attrs for a in got)
    assert got[0] is not got[10]  # a copy made again after the change


def test_a_reused_mapping_keeps_value_types_exactly():
    """``1 == True == 1.0``: equal values of another type must not reuse an older snapshot."""
    client = _client()
    attrs = {"country": "CN", "age": 1}
    for value in (1, True, 1.0, "1", 1):
        attrs["age"] = value
        _enrolled(client, "half", 2, attrs, start=len(client._records()) * 10)
    got = [(type(r[4]["age"]), r[4]["age"]) for r in client._records()]
    assert got == [(t, v) for t, v in ((int, 1), (bool, True), (float, 1.0), (str, "1"), (int, 1))
                   for _ in range(2)]
    text = {"country": "CN"}
    _enrolled(client, "half", 2, text, start=50_000)
    text["country"] = "US"
    _enrolled(client, "half", 2, text, start=60_000)
    assert [r[4] for r in client._records()[-4:]] == [{"country": "CN"}] * 2 + [{"country": "US"}] * 2


def test_a_read_only_view_is_snapshotted_from_what_it_shows_at_each_call():
    client = _client()
    underlying = {"country": "CN"}
    view = MappingProxyType(underlying)
    _enrolled(client, "half", 3, view)
    underlying["country"] = "US"
    _enrolled(client, "half", 3, view, start=1000)
    got = [r[4] for r in client._records()]
    assert got == [{"country": "CN"}] * 3 + [{"country": "US"}] * 3
    assert all(type(a) is dict for a in got)


def test_assigning_from_threads_queues_each_unit_once_with_its_own_attributes():
    import threading

    client = _client()
    shared = {"country": "CN"}

    def work(offset):
        mine = {"country": "US", "worker": str(offset)}
        for i in range(2_000):
            unit = f"u-{offset}-{i}"
            client.assign("half", unit, shared if i % 2 else mine)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = client._records()
    assert len(records) == len({r[2] for r in records}) == client.stats["queued"]
    for record in records:
        offset, i = record[2].split("-")[1:]
        expected = {"country": "CN"} if int(i) % 2 else {"country": "US", "worker": offset}
        assert record[4] == expected


@pytest.mark.parametrize("document", [DATA["document"], DATA["client_document"], SHAPES],
                         ids=["vectors", "client-document", "shapes"])
def test_assign_with_logging_answers_like_the_evaluator_and_queues_exactly_the_enrolled(document):
    client = Client("http://127.0.0.1:9", "key", bootstrap=document, start=False, background=False,
                    max_queue=100_000)
    expected = []
    for key, unit, attrs, sdk, _ in _answers(document):
        answer = client.assign(key, unit, attrs)
        reference = sdk.evaluate(key, unit, attrs)
        assert (answer.variant, answer.reason, answer.phase) == (reference.variant, reference.reason, reference.phase)
        if answer.reason == "assigned":
            expected.append((key, answer.variant, unit, attrs or None, document.get("version"), answer.phase))
    assert expected
    assert [(r[0], r[1], r[2], r[4], r[5], r[6]) for r in client._records()] == expected


def test_an_assigned_answer_without_a_prebuilt_head_is_still_queued():
    client = _client()
    evaluator = client._evaluator
    assign = client._logging("half", evaluator._assigners["half"], "shapes", set())  # no heads
    units = [f"u-{i}" for i in range(40)]
    answers = [assign(u, {"country": "CN"}) for u in units]
    assert [(r[0], r[1], r[2], r[4], r[5], r[6]) for r in client._records()] == [
        ("half", a.variant, u, {"country": "CN"}, "shapes", 2)
        for u, a in zip(units, answers, strict=True) if a.reason == "assigned"]
