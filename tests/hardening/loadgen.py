"""Load on loopback with wrk: assignments and event batches together, counted exactly.

Shared by the CI load test (tests/hardening/test_load.py, ~12 s) and the benchmark
(bench/load_test.py, 60 s). wrk's Lua script alternates ``POST /api/v1/assignments`` (one unit)
and ``POST /api/v1/events`` (a batch of unique event ids), and sums the ``accepted`` and
``duplicates`` the API answers. Event batches stop two seconds before wrk does, so none is cut off
in flight; :func:`retry_tail` then re-sends the last batches like a client unsure of its answers
(idempotent: they come back as duplicates). Then ```accepted`` summed over
wrk's answers must equal the events in the database, and the re-sent batches must all come back
as duplicates.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LUA = r"""
local threads = {}
local run = "%(run)s"
local batch = %(batch)d
local key = "%(key)s"
local experiments = '%(experiments)s'
local events_for = %(events_for)d  -- seconds; then assignments only, so no batch is cut off

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  counter = 0
  accepted = 0
  duplicates = 0
  rejected = 0
  events_sent = 0
  event_batches = 0
  statuses = {}
  started = os.time()
  headers = {["Authorization"] = "Api-Key " .. key, ["Content-Type"] = "application/json"}
end

function request()
  counter = counter + 1
  if counter %% 2 == 0 and os.time() - started < events_for then
    local parts = {}
    for i = 1, batch do
      parts[i] = string.format('{"event_id":"%%s-%%d-%%d-%%d","unit_id":"u-%%d-%%d","event":"purchase","value":1.5}',
                               run, tid, counter, i, tid, (counter * 7 + i) %% 5000)
    end
    events_sent = events_sent + batch
    event_batches = event_batches + 1
    return wrk.format("POST", "/api/v1/events", headers, '{"events":[' .. table.concat(parts, ",") .. ']}')
  end
  local body = string.format('{"unit_id":"u-%%d-%%d","attributes":{"country":"CN","platform":"ios"}%%s}',
                             tid, counter, experiments)
  return wrk.format("POST", "/api/v1/assignments", headers, body)
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 202 then
    accepted = accepted + tonumber(string.match(body, '"accepted":(%%d+)'))
    duplicates = duplicates + tonumber(string.match(body, '"duplicates":(%%d+)'))
    if not string.find(body, '"rejected":%%[%%]') then rejected = rejected + 1 end
  end
end

function done(summary, latency, requests)
  local out = {}
  for _, t in ipairs(threads) do
    local st = {}
    for code, n in pairs(t:get("statuses")) do table.insert(st, string.format('"%%d":%%d', code, n)) end
    table.insert(out, string.format(
      '{"tid":%%d,"counter":%%d,"accepted":%%d,"duplicates":%%d,"rejected":%%d,"events_sent":%%d,"event_batches":%%d,"statuses":{%%s}}',
      t:get("tid"), t:get("counter"), t:get("accepted"), t:get("duplicates"), t:get("rejected"),
      t:get("events_sent"), t:get("event_batches"), table.concat(st, ",")))
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%%d,"duration_us":%%d,"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"latency_us":{"p50":%%d,"p99":%%d,"max":%%d},"threads":[%%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, table.concat(out, ",")))
end
"""


@dataclass
class LoadResult:
    run: str
    batch: int
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    threads: list[dict]
    statuses: dict[int, int] = field(default_factory=dict)
    retried_batches: int = 0
    accepted: int = 0
    duplicates: int = 0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        bad_status = sum(n for code, n in self.statuses.items() if code not in (200, 202))
        return sum(self.errors.values()) + bad_status

    @property
    def event_ids(self) -> int:
        return sum(t["events_sent"] for t in self.threads)

    def summary(self) -> str:
        return (f"{self.requests} requests in {self.seconds:.1f} s ({self.rate:.0f}/s; "
                f"p50 {self.latency_ms['p50']:.1f} ms, p99 {self.latency_ms['p99']:.1f} ms), "
                f"statuses {dict(sorted(self.statuses.items()))}, errors {self.error_count}; "
                f"{self.event_ids} event ids sent, {self.accepted} acknowledged as accepted "
                f"({self.retried_batches} tail batches re-sent)")


def run_wrk(base_url: str, key: str, *, seconds: float, threads: int = 2, connections: int = 16,
            batch: int = 20, experiments: tuple[str, ...] = (), wrk: str = "wrk") -> LoadResult:
    """Event batches stop 2 s before the end (assignments go on), so no batch is in flight when
    wrk cuts its connections and every stored event has its answer counted."""
    run = uuid.uuid4().hex[:10]
    chosen = "," + json.dumps({"experiments": list(experiments)})[1:-1] if experiments else ""
    script = LUA % {"run": run, "batch": batch, "key": key, "experiments": chosen,
                    "events_for": max(1, int(seconds) - 2)}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", "10s",
             "-s", f.name, base_url],
            capture_output=True, text=True, timeout=seconds + 120,
        )
    finally:
        Path(f.name).unlink(missing_ok=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
    data = json.loads(line[len("RESULT "):])
    statuses: dict[int, int] = {}
    for t in data["threads"]:
        for code, n in t["statuses"].items():
            statuses[int(code)] = statuses.get(int(code), 0) + n
    result = LoadResult(
        run=run, batch=batch, requests=data["requests"], seconds=data["duration_us"] / 1e6,
        errors=data["errors"], latency_ms={k: v / 1000 for k, v in data["latency_us"].items()},
        threads=data["threads"], statuses=statuses,
    )
    result.accepted = sum(t["accepted"] for t in data["threads"])
    result.duplicates = sum(t["duplicates"] for t in data["threads"])
    return result


def retry_tail(result: LoadResult, base_url: str, key: str, *, tail: int = 16) -> None:
    """Re-send the last ``tail`` event batches of each wrk thread, as a client unsure of its last
    answers would, and add the answers to the totals: they must all be duplicates."""
    for t in result.threads:
        counters = _event_counters(t)[:tail]
        for counter in counters:
            ids = [f"{result.run}-{t['tid']}-{counter}-{i}" for i in range(1, result.batch + 1)]
            body = {"events": [{"event_id": i, "unit_id": f"u-{t['tid']}-{(counter * 7 + n) % 5000}",
                                "event": "purchase", "value": 1.5} for n, i in enumerate(ids, start=1)]}
            request = urllib.request.Request(
                base_url + "/api/v1/events", data=json.dumps(body).encode(), method="POST",
                headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                reply = json.loads(response.read())
            result.accepted += reply["accepted"]
            result.duplicates += reply["duplicates"]
            result.retried_batches += 1


def _event_counters(thread: dict) -> list[int]:
    """The request counters of a thread's event batches, newest first: the first
    ``event_batches`` even counters (after the cut-off, even counters are assignments too)."""
    return list(range(2, thread["counter"] + 1, 2))[: thread["event_batches"]][::-1]


def stored_events(database_url: str, run: str) -> tuple[int, int]:
    """``(rows, distinct event ids)`` of this run's events in the database."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM analysis_event WHERE event_id LIKE %s",
            [f"{run}-%"],
        ).fetchone()
