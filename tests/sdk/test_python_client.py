"""The Python SDK client against a scripted HTTP server: ETag refresh, the last good and the
saved configuration, defaults, batching, retry with backoff, the bounded queue, flush on close.
(The live round trip against the real server is test_live.py.)"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from abplatform_sdk import Client

from .conftest import VECTORS

DATA = json.loads(VECTORS.read_text(encoding="utf-8"))
BODY = json.dumps(DATA["document"]).encode()
ENROLLED = [c for c in DATA["cases"] if c["reason"] == "assigned"]


class Fake:
    """A tiny server whose answers the test scripts through ``config`` and ``exposures``."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict, bytes]] = []
        self.config = lambda headers: (200, BODY)
        self.exposures = lambda body: (202, json.dumps({"accepted": len(body["exposures"]), "rejected": []}).encode())
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body, etag=True):
                self.send_response(status)
                if etag:
                    self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self):
                fake.calls.append(("GET", self.path, dict(self.headers), b""))
                status, body = fake.config(self.headers)
                self._answer(status, body)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                fake.calls.append(("POST", self.path, dict(self.headers), raw))
                status, body = fake.exposures(json.loads(raw))
                self._answer(status, body, etag=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self):
        return [json.loads(c[3]) for c in self.calls if c[0] == "POST"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = Fake()
    yield server
    server.close()


def make(url, **kwargs):
    kwargs.setdefault("refresh_seconds", 3600)
    kwargs.setdefault("flush_seconds", 3600)
    return Client(url, "key", **kwargs)


def test_etag_refresh_and_no_io_on_assign(fake):
    fake.config = lambda h: (304, b"") if h.get("If-None-Match") == '"v1"' else (200, BODY)
    with make(fake.url) as client:
        assert client.config_version == "vectors"
        assert fake.calls[0][2]["Authorization"] == "Api-Key key"
        assert client.refresh() is True
        assert client.stats["not_modified"] == 1
        before = len(fake.calls)
        case = ENROLLED[0]
        answer = client.assign(case["experiment"], case["unit_id"], case["attributes"])
        assert (answer.variant, answer.reason) == (case["variant"], "assigned")
        client.assign(case["experiment"], case["unit_id"], case["attributes"])
        assert len(fake.calls) == before
        assert client.queue_size == 1  # the repeat is deduplicated
        assert client.stats["deduplicated"] == 1


@pytest.mark.parametrize("failure", ["bad-json", "500", "bad-document", "down"])
def test_refresh_failures_keep_the_last_good_configuration(fake, failure):
    client = make(fake.url)
    try:
        if failure == "down":
            fake.close()
        else:
            fake.config = {
                "bad-json": lambda h: (200, b"{not json"),
                "500": lambda h: (500, b"{}"),
                "bad-document": lambda h: (200, b'{"schema_version": 99, "experiments": []}'),
            }[failure]
        assert client.refresh() is True
        assert client.stats["refresh_errors"] == 1
        assert client.config_version == "vectors"
    finally:
        client.close()


def test_never_loaded_gives_defaults_then_the_saved_copy(tmp_path, fake):
    path = tmp_path / "config.json"
    with make(fake.url, cache_path=path) as client:
        assert client.ready
    assert json.loads(path.read_bytes())["version"] == "vectors"
    fake.close()
    with make(fake.url, timeout=0.5) as cold:
        answer = cold.assign("checkout-button", "u-1", {}, default="control")
        assert (answer.variant, answer.reason, answer.in_experiment) == ("control", "no_config", False)
        assert cold.queue_size == 0
    with make(fake.url, cache_path=path, timeout=0.5) as warm:
        assert warm.config_version == "vectors"


def test_slow_server_times_out(fake):
    fake.config = lambda h: (time.sleep(1.5), (200, BODY))[1]
    started = time.monotonic()
    client = make(fake.url, timeout=0.3)
    assert time.monotonic() - started < 1.2
    assert not client.ready
    client.close()


def test_batches_retry_and_partial_rejection(fake):
    failing = [True]

    def exposures(body):
        if failing[0]:
            return 500, b"boom"
        n = len(body["exposures"])
        return 202, json.dumps({"accepted": n - 1, "rejected": [{"index": 0, "errors": {}}]}).encode()

    fake.exposures = exposures
    with make(fake.url, batch_size=3, background=False) as client:
        for case in ENROLLED[:7]:
            client.assign(case["experiment"], case["unit_id"], case["attributes"])
        assert client.flush() is False
        assert client.queue_size == 7  # nothing lost on a 500
        failing[0] = False
        assert client.flush() is True
        assert [len(p["exposures"]) for p in fake.posts()[1:]] == [3, 3, 1]
        item = fake.posts()[1]["exposures"][0]
        assert {"experiment", "variant", "unit_id", "timestamp", "attributes", "config_version"} <= set(item)
        assert item["config_version"] == "vectors" and item["timestamp"].endswith("Z")
        assert (client.stats["sent"], client.stats["rejected"]) == (4, 3)


def test_background_flush_backs_off_then_delivers(fake):
    failures = [2]

    def exposures(body):
        if failures[0] > 0:
            failures[0] -= 1
            return 503, b""
        return 202, json.dumps({"accepted": len(body["exposures"]), "rejected": []}).encode()

    fake.exposures = exposures
    with make(fake.url, flush_seconds=0.05, max_backoff=0.2) as client:
        case = ENROLLED[0]
        client.assign(case["experiment"], case["unit_id"], case["attributes"])
        deadline = time.monotonic() + 5
        while client.stats["sent"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.stats["sent"] == 1
        assert client.stats["flush_errors"] == 2


def test_bounded_queue_drops_oldest_and_counts(fake):
    with make(fake.url, max_queue=5, background=False) as client:
        for case in ENROLLED[:8]:
            client.assign(case["experiment"], case["unit_id"], case["attributes"])
        assert client.queue_size == 5
        assert client.stats["dropped"] == 3
        kept = [e[2] for e in client._records()]
        assert kept == [c["unit_id"] for c in ENROLLED[3:8]]


def test_close_flushes_the_queue(fake):
    client = make(fake.url)
    for case in ENROLLED[:4]:
        client.assign(case["experiment"], case["unit_id"], case["attributes"])
    client.close()
    assert sum(len(p["exposures"]) for p in fake.posts()) == 4


def test_thread_safety_every_exposure_once(fake):
    """8 threads assign concurrently while the flusher runs: every enrolled unit arrives once."""
    with make(fake.url, flush_seconds=0.01, batch_size=50, max_queue=100_000) as client:
        key = ENROLLED[0]["experiment"]
        attrs = ENROLLED[0]["attributes"]
        enrolled = []

        def work(offset):
            for i in range(offset, 4000, 8):
                if client.assign(key, f"t-{i}", attrs).reason == "assigned":
                    enrolled.append(f"t-{i}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    units = [e["unit_id"] for p in fake.posts() for e in p["exposures"]]
    assert len(enrolled) > 100
    assert sorted(units) == sorted(enrolled)
    assert client.stats["queued"] == len(enrolled) and client.stats["dropped"] == 0


def test_drop_counter_is_exact_across_failed_sends(fake):
    fake.exposures = lambda body: (500, b"")
    with make(fake.url, max_queue=5, batch_size=3, background=False) as client:
        for case in ENROLLED[:5]:
            client.assign(case["experiment"], case["unit_id"], case["attributes"])
        assert client.flush() is False  # 3 taken, failed, put back in front
        assert [e[2] for e in client._records()] == [c["unit_id"] for c in ENROLLED[:5]]
        for case in ENROLLED[5:8]:
            client.assign(case["experiment"], case["unit_id"], case["attributes"])
        stats = client.stats
        assert (stats["queued"], stats["dropped"], client.queue_size) == (8, 3, 5)
        assert [e[2] for e in client._records()] == [c["unit_id"] for c in ENROLLED[3:8]]
        fake.exposures = lambda body: (202, b'{"accepted": 0, "rejected": []}')


def test_a_new_configuration_forgets_which_units_were_exposed(fake):
    """A new phase (or any new version) may need a unit's exposure again."""
    versions = iter(["v1", "v2"])

    def config(headers):
        return 200, json.dumps(dict(DATA["document"], version=next(versions))).encode()

    fake.config = config
    with make(fake.url, background=False) as client:
        case = ENROLLED[0]
        client.assign(case["experiment"], case["unit_id"], case["attributes"])
        client.assign(case["experiment"], case["unit_id"], case["attributes"])
        assert client.queue_size == 1
        client.refresh()
        client.assign(case["experiment"], case["unit_id"], case["attributes"])
        assert client.queue_size == 2
        assert [e[5] for e in client._records()] == ["v1", "v2"]
