"""Fuzzing the REST API from its own OpenAPI schema: the app under test, its data and a counter.

The schema is the one the API serves at ``/api/schema/``, so an endpoint that lands tomorrow is
fuzzed tomorrow without touching these files. Budgets come from the environment so CI runs a
bounded, seeded pass and ``bench/fuzz_long.py`` a long one:

* ``FUZZ_MAX_EXAMPLES`` (default 25): Hypothesis examples per operation and generation mode;
* ``FUZZ_SEED`` (default fixed): the run is derandomized from it, so CI failures reproduce.
"""
from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field

import pytest

FUZZ_MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20260101"))


class CountingApp:
    """WSGI wrapper around Django that counts every request the fuzzer makes, by status."""

    def __init__(self, app) -> None:
        self.app = app
        self.statuses: Counter[int] = Counter()
        self.operations: Counter[str] = Counter()
        self.credentials: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def __call__(self, environ, start_response):
        def counting_start_response(status, headers, exc_info=None):
            with self._lock:
                self.statuses[int(status.split()[0])] += 1
                self.operations[f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"] += 1
                code = int(status.split()[0])
                if not environ.get("HTTP_AUTHORIZATION"):
                    self.credentials["no key"] += 1
                elif code == 401:
                    self.credentials["rejected key"] += 1
                else:
                    self.credentials["valid key"] += 1
            return start_response(status, headers, exc_info)

        return self.app(environ, counting_start_response)


def _wsgi_app():
    from django.core.handlers.wsgi import WSGIHandler

    return WSGIHandler()


APP = CountingApp(_wsgi_app())


@dataclass
class FuzzWorld:
    """The rows fuzzed requests can reach, so path parameters sometimes name real objects."""

    admin_key: str
    keys: dict[str, list[str]] = field(default_factory=dict)

    @property
    def auth_header(self) -> str:
        return f"Api-Key {self.admin_key}"


@pytest.fixture
def fuzz_world(db, api_key) -> FuzzWorld:
    """Metrics, a layer and experiments in every status, plus an admin key."""
    from access import keycache
    from assignment import exposures, runtime
    from experiments import services
    from experiments.models import Layer, Metric

    runtime.reset()
    exposures.local_buffer.take()
    keycache.clear()
    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    Metric.objects.create(key="revenue", name="Revenue", event="purchase", kind="sum")
    Layer.objects.create(key="checkout", name="Checkout", holdout_percent=10)

    def experiment(key: str, *transitions: str) -> None:
        exp = services.create_experiment({
            "key": key, "name": key, "traffic_allocation": 100, "planned_sample_size": 10000,
            "variants": [
                {"key": "control", "weight": 50, "is_control": True, "payload": {"color": "grey"}},
                {"key": "green", "weight": 50, "payload": {"color": "green"}},
            ],
            "metrics": [{"metric": "purchase", "role": "primary"}, {"metric": "revenue", "role": "secondary"}],
            "targeting": [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}],
        }, actor="fuzz")
        for action in transitions:
            services.TRANSITION_FUNCTIONS[action](exp, actor="fuzz")

    experiment("fuzz-running", "start")
    experiment("fuzz-draft")
    experiment("fuzz-paused", "start", "pause")
    experiment("fuzz-completed", "start", "complete")
    from experiments import approvals
    from experiments.models import Experiment

    pending = approvals.request_approval(Experiment.objects.get(key="fuzz-draft"), "start", key="fuzz")
    world = FuzzWorld(
        admin_key=api_key("admin"),
        keys={
            "experiments": ["fuzz-running", "fuzz-draft", "fuzz-paused", "fuzz-completed"],
            "metrics": ["purchase", "revenue"],
            "layers": ["checkout"],
            "units": ["fuzz-unit-1", "ü-ñï-😀"],
            "approvals": [str(pending.pk)],
        },
    )
    yield world
    runtime.reset()
    exposures.local_buffer.take()


#: The admin key of the running test, read by the schemathesis auth provider.
CURRENT: dict[str, str | None] = {"key": None}


@pytest.fixture
def admin_auth(fuzz_world):
    """Set before Hypothesis starts generating (auth is applied at generation time)."""
    CURRENT["key"] = fuzz_world.admin_key
    yield fuzz_world
    CURRENT["key"] = None


@pytest.fixture(autouse=True)
def _keep_the_test_transaction(monkeypatch):
    """Django's WSGI handler closes "old" connections around each request, which inside a test
    transaction (PostgreSQL pass) would break it; the test client does the same disconnect."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def pytest_sessionfinish(session, exitstatus):
    """Under pytest-xdist, each worker hands its counts to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["fuzz"] = {"statuses": dict(APP.statuses), "operations": dict(APP.operations),
                          "credentials": dict(APP.credentials)}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    counts = getattr(node, "workeroutput", {}).get("fuzz")
    if counts:
        APP.statuses.update({int(k): v for k, v in counts["statuses"].items()})
        APP.operations.update(counts["operations"])
        APP.credentials.update(counts["credentials"])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not APP.requests:
        return
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(APP.statuses.items()))
    terminalreporter.write_sep("-", "API fuzzing (schemathesis)")
    credentials = ", ".join(f"{kind}: {n}" for kind, n in sorted(APP.credentials.items()))
    terminalreporter.write_line(
        f"fuzz: {APP.requests} requests against {len(APP.operations)} distinct URLs "
        f"(max_examples={FUZZ_MAX_EXAMPLES}/operation/mode, seed={FUZZ_SEED}); statuses {statuses}; {credentials}"
    )
    server_errors = sum(n for code, n in APP.statuses.items() if code >= 500 and code != 503)
    terminalreporter.write_line(f"fuzz: {server_errors} responses with a 5xx other than 503")
