"""HTTP throughput of the assignment API against a bare Django view, with gunicorn and wrk.

Serves the app with gunicorn (2 workers) on 127.0.0.1 from a throw-away SQLite database with
10 running experiments (in the Redis mode, ``BENCH_DATABASE_URL`` may name an EMPTY PostgreSQL
database instead), loads it with ``wrk`` at 16 connections and prints req/s, p50 and p99
for: the yardstick, a bare Django view with NO middleware (``bench/bench_wsgi.py``); the same
view through all the middleware (same POST body); a DRF
view with the same authentication returning the same constant (the framework's floor), the batch
endpoint with one experiment, the batch endpoint with 10 running experiments, and the single
GET endpoint. Then the ratio to the bare view without middleware. Only loopback traffic; bounded in time.

    .venv/bin/python bench/bench_assignment_http.py [--duration 5] [--rounds 3] [--connections 16]
        [--mode embedded|redis|both] [--worker-class sync|gthread]

Installs the Debian package ``wrk`` when it is missing (needs root).

Figures (docs/assignment.md, "11. Speed"; Redis + PostgreSQL, 2 shared cores, load 3-5):
``POST /assignments`` with 1 experiment went from 51 % of the no-middleware view (44 % of its
CPU per request) to 71 % (65 %) with issue 13's hot-path changes, measured back to back.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")

SETUP = r"""
import django, json
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from access.services import create_api_key
from experiments import services
from experiments.models import Metric
Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
for i in range(10):
    e = services.create_experiment({
        "key": f"exp-{i}", "name": f"Experiment {i}", "traffic_allocation": 100, "planned_sample_size": 10000,
        "variants": [
            {"key": "control", "weight": 50, "is_control": True, "payload": {"color": "grey"}},
            {"key": "green", "weight": 50, "payload": {"color": "green"}},
        ],
        "metrics": [{"metric": "purchase", "role": "primary"}],
        "targeting": [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}] if i % 2 else [],
    })
    services.start_experiment(e)
_, raw = create_api_key("bench", "client")
print(json.dumps({"key": raw}))
"""

LUA = r"""
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
wrk.method = "__METHOD__"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Api-Key __KEY__"
request = function()
  local n = math.random(1, 10000000)
  local body = string.format('__BODY__', n)
  local path = string.format('__PATH__', n)
  if wrk.method == "GET" then body = nil end
  return wrk.format(nil, path, nil, body)
end
"""

SCENARIOS = [
    ("bare Django view, NO middleware", "POST", "/bench/nomw",
     '{"unit_id":"u-%d","attributes":{"country":"CN","platform":"ios"},"experiments":["exp-0"]}'),
    ("bare Django view, all middleware", "POST", "/bench/bare",
     '{"unit_id":"u-%d","attributes":{"country":"CN","platform":"ios"},"experiments":["exp-0"]}'),
    ("DRF view, same auth (constant JSON)", "POST", "/bench/drf",
     '{"unit_id":"u-%d","attributes":{"country":"CN","platform":"ios"},"experiments":["exp-0"]}'),
    ("POST /assignments, 1 experiment", "POST", "/api/v1/assignments",
     '{"unit_id":"u-%d","attributes":{"country":"CN","platform":"ios"},"experiments":["exp-0"]}'),
    ("POST /assignments, 10 experiments", "POST", "/api/v1/assignments",
     '{"unit_id":"u-%d","attributes":{"country":"CN","platform":"ios"}}'),
    ("GET /experiments/<key>/assignment", "GET",
     "/api/v1/experiments/exp-1/assignment?unit_id=u-%d&country=CN", ""),
]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing the Debian package ...", flush=True)
    for _ in range(30):  # another apt may hold the lock for a while
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True)
        if done.returncode == 0 and shutil.which("wrk"):
            return shutil.which("wrk")
        time.sleep(5)
    sys.exit("could not install wrk (apt-get install -y wrk)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"server did not come up at {url}")


def worker_pids(master: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            pids.append(int(stat.parent.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the gunicorn workers used: robust when other load shares the machine."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(wrk: str, base: str, key: str, scenario, duration: int, connections: int, tmp: Path,
            pids: list[int] = ()) -> dict:
    label, method, path, body = scenario
    script = tmp / f"s{uuid.uuid4().hex[:6]}.lua"
    lua = LUA.replace("__METHOD__", method).replace("__KEY__", key)
    script.write_text(lua.replace("__BODY__", body).replace("__PATH__", path))
    cpu_before = cpu_seconds(pids)
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), base],
        capture_output=True, text=True, timeout=duration + 60,
    ).stdout
    cpu = cpu_seconds(pids) - cpu_before
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"label": label, "rps": rps, "p50": p50, "p99": p99,
            "cpu_us": cpu / max(requests, 1) * 1e6,
            "non2xx": int(errors.group(1)) if errors else 0,
            "socket": socket_errors.group(1) if socket_errors else ""}


def bench_mode(mode: str, args, wrk: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-assign-"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.bench_settings",
           "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}", "PYTHONPATH": str(ROOT), "DEBUG": "false"}
    env.pop("REDIS_URL", None)
    if mode == "redis" and os.environ.get("BENCH_DATABASE_URL"):  # an EMPTY PostgreSQL database
        env["DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    prefix = f"{{bench-{uuid.uuid4().hex[:8]}}}"
    if mode == "redis":
        env.update(REDIS_URL=REDIS_URL, CACHE_KEY_PREFIX=prefix, BENCH_REDIS_PREFIX=prefix,
                   CELERY_TASK_ALWAYS_EAGER="true")
    key = json.loads(subprocess.run(
        [PYTHON, "-c", SETUP], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip().splitlines()[-1])["key"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [GUNICORN, "bench.bench_wsgi:application", "-w", "2", "-b", f"127.0.0.1:{port}",
           "--log-level", "warning", "--worker-class", args.worker_class]
    if args.worker_class == "gthread":
        cmd += ["--threads", "4"]
    server = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        wait_ready(f"{base}/bench/bare")
        for _ in range(20):  # warm both workers: API key and configuration caches
            req = urllib.request.Request(
                f"{base}/api/v1/assignments", data=b'{"unit_id":"warm"}', method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Api-Key {key}"},
            )
            urllib.request.urlopen(req, timeout=5).read()
        print(f"\nmode={mode}  gunicorn 2 workers ({args.worker_class}), wrk -t2 "
              f"-c{args.connections}, {args.rounds} interleaved rounds of {args.duration}s, 127.0.0.1")
        pids = worker_pids(server.pid)
        run_wrk(wrk, base, key, SCENARIOS[0], 2, args.connections, tmp)  # warm-up, discarded
        rounds = []
        for _ in range(args.rounds):  # interleaved, so drift in machine load hits all alike
            rounds.append([
                run_wrk(wrk, base, key, scenario, args.duration, args.connections, tmp, pids)
                for scenario in SCENARIOS
            ])
        print(f"  {'scenario (medians over rounds)':38s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}"
              f" {'vs bare':>8s} {'cpu us/req':>11s} {'cpu vs bare':>12s}")
        for i, scenario in enumerate(SCENARIOS):
            runs = [r[i] for r in rounds]
            ratio = median(r[i]["rps"] / r[0]["rps"] for r in rounds)
            cpu_ratio = median(r[0]["cpu_us"] / r[i]["cpu_us"] for r in rounds)
            errors = sum(x["non2xx"] for x in runs)
            note = f"  (non-2xx: {errors})" if errors else ""
            print(f"  {scenario[0]:38s} {median(x['rps'] for x in runs):>9,.0f} "
                  f"{median(x['p50'] for x in runs):>8.2f} {median(x['p99'] for x in runs):>8.2f} "
                  f"{ratio:>7.0%} {median(x['cpu_us'] for x in runs):>11.0f} {cpu_ratio:>11.0%}{note}",
                  flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if mode == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for k in client.scan_iter(f"*{prefix}*"):
                client.delete(k)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per scenario per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--mode", choices=["embedded", "redis", "both"], default="both")
    parser.add_argument("--worker-class", choices=["sync", "gthread"], default="sync")
    args = parser.parse_args()
    wrk = ensure_wrk()
    for mode in (["embedded", "redis"] if args.mode == "both" else [args.mode]):
        bench_mode(mode, args, wrk)


if __name__ == "__main__":
    main()
