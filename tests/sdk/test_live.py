"""Live round trips: the SDKs assign locally against a real server (gunicorn), exposures
arrive through POST /api/v1/exposures and a report counts them; the server going away and
coming back loses nothing."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter

import pytest
from abplatform_sdk import Client

from tests.hardening.procs import Gunicorn

from .conftest import SDK_JS

pytestmark = pytest.mark.slow


def test_python_sdk_round_trip(sdk_server):
    before = sdk_server.report_counts("sdk-live")
    with Client(sdk_server.url, sdk_server.keys["client"], flush_seconds=0.2) as client:
        assert client.ready
        answers = {f"py-{i}": client.assign("sdk-live", f"py-{i}", {"country": "CN"}) for i in range(300)}
        assert {a.reason for a in answers.values()} == {"assigned"}
        # The same unit again: no second exposure; an unknown key: the default, no exposure.
        client.assign("sdk-live", "py-0", {"country": "CN"})
        assert client.assign("nope", "py-0", default="off").variant == "off"
    assert client.stats["sent"] == 300 and client.stats["rejected"] == 0, client.stats
    after = sdk_server.report_counts("sdk-live")
    expected = Counter(a.variant for a in answers.values())
    assert {k: after.get(k, 0) - before.get(k, 0) for k in expected} == dict(expected)
    stored = sdk_server.exposures("sdk-live")
    assert all(stored[u] == a.variant for u, a in answers.items())


def test_python_sdk_survives_the_server_going_away(sdk_server, tmp_path):
    """Config fetched, server stopped: assignment continues from the last good configuration,
    exposures wait in the queue (retried with backoff); server back on the same port: they
    arrive. A new client that never reached the server starts from the saved copy."""
    cache = tmp_path / "config.json"
    client = Client(sdk_server.url, sdk_server.keys["client"], flush_seconds=0.1, max_backoff=0.5,
                    cache_path=cache, timeout=1)
    sdk_server.gunicorn.stop()
    try:
        answers = {f"down-{i}": client.assign("sdk-live", f"down-{i}") for i in range(20)}
        assert client.refresh() is True  # the last good configuration stays
        assert client.flush() is False and client.queue_size == 20
        cold = Client(sdk_server.url, sdk_server.keys["client"], timeout=0.5, cache_path=cache)
        assert cold.config_version == client.config_version
        assert cold.assign("sdk-live", "down-0").variant == answers["down-0"].variant
        cold.close()
        never = Client(sdk_server.url, sdk_server.keys["client"], timeout=0.5)
        assert never.assign("sdk-live", "x", default="control").reason == "no_config"
        never.close()
    finally:
        sdk_server.gunicorn = Gunicorn(sdk_server.env, workers=1, threads=4, port=sdk_server.gunicorn.port)
        sdk_server.gunicorn.start()
    client.close()
    assert client.queue_size == 0 and client.stats["sent"] >= 20, client.stats
    sdk_server.report_counts("sdk-live")
    stored = sdk_server.exposures("sdk-live")
    assert {u: stored.get(u) for u in answers} == {u: a.variant for u, a in answers.items()}


def test_a_broken_sdk_shows_on_the_report(sdk_server):
    """Exposures the server's evaluation disagrees with are refused and counted in the report."""
    with Client(sdk_server.url, sdk_server.keys["client"], background=False) as client:
        answer = client.assign("sdk-other", "broken-1")
        assert client._records()[0][1] == answer.variant
        experiment, variant, version, phase = client._queue[0]  # the record's head
        client._queue[0] = (experiment, "control" if variant == "green" else "green", version, phase)
        assert client.flush() is True
    assert client.stats["rejected"] == 1
    sdk_server.call("POST", "/api/v1/experiments/sdk-other/results/refresh")
    payload = sdk_server.call("GET", "/api/v1/experiments/sdk-other/results")
    assert payload["sdk_exposures"]["mismatched"] >= 1


def test_js_sdk_round_trip(sdk_server):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    result = subprocess.run(
        [node, "--test", "test/live.test.js"], cwd=SDK_JS, capture_output=True, text=True, timeout=120,
        env={**os.environ, "ABPLATFORM_URL": sdk_server.url, "ABPLATFORM_KEY": sdk_server.keys["client"],
             "ABPLATFORM_OUT": str(SDK_JS / ".live-answers.json")},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    out = SDK_JS / ".live-answers.json"
    answers = json.loads(out.read_text())
    out.unlink()
    assert len(answers) == 200
    sdk_server.report_counts("sdk-live")
    stored = sdk_server.exposures("sdk-live")
    assert {u: stored.get(u) for u in answers} == answers
