"""Feature-flag evaluation speed: in process (server evaluator and Python SDK) and over HTTP.

In process: evaluations per CPU second of one core, every evaluation a new unit, for a flag with
three rules (a force rule whose audience fails, a listed-units rule that does not list the unit,
a 50 % rollout that hashes), and for one whose third rule is an experiment. Goal: at least
500,000 per second per core for the 3-rule flag.

HTTP (``--http``): gunicorn (2 sync workers) and ``wrk`` as in bench/bench_assignment_http.py,
embedded mode, interleaved rounds: ``POST /api/v1/flags/evaluate`` for the 3-rule flag (and for
a flag with an experiment rule) against ``POST /api/v1/assignments`` for one experiment. Goal:
within 10 % of the assignment endpoint's throughput.

    .venv/bin/python bench/bench_flags.py [--seconds 2] [--http] [--duration 3] [--rounds 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sdk" / "python"))

AUDIENCES = {
    "eu": {"match": "all", "conditions": [{"attribute": "country", "operator": "in", "values": ["DE", "FR"]}]},
}
THREE_RULES = [
    {"id": "r1", "type": "force", "audiences": ["eu"], "value": True},
    {"id": "r2", "type": "units", "units": {"qa-user-1": True, "qa-user-2": True}, "hashed_units": {}},
    {"id": "r3", "type": "rollout", "audiences": [], "value": True, "percent": 50.0, "salt": "new-checkout"},
]
FLAGS = [
    {"key": "new-checkout", "type": "boolean", "default": False, "enabled": True, "unit_salt": "",
     "rules": THREE_RULES},
    {"key": "checkout-color", "type": "string", "default": "grey", "enabled": True, "unit_salt": "", "rules": [
        THREE_RULES[0], THREE_RULES[1],
        {"id": "r4", "type": "experiment", "experiment": "exp-0", "values": {"control": "grey", "green": "green"}},
    ]},
]


def document() -> dict:
    experiment = {
        "key": "exp-0", "status": "running", "salt": "exp-0", "traffic_allocation": 100.0,
        "layer": None, "layer_range": None, "audiences": [], "enabled": True,
        "variants": [
            {"key": "control", "weight": 50.0, "is_control": True, "payload": {}},
            {"key": "green", "weight": 50.0, "is_control": False, "payload": {"color": "green"}},
        ],
        "targeting": [], "overrides": {}, "shipped_variant": None,
    }
    return {"schema_version": 1, "version": "bench", "hash": {"algorithm": "sha256", "buckets": 10000},
            "layers": {}, "experiments": [experiment], "audiences": AUDIENCES, "flags": FLAGS}


def rate(fn, seconds: float, n_units: int = 10_000) -> float:
    units = [f"user-{i}" for i in range(n_units)]
    done, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for unit in units:
            fn(unit)
        done += len(units)
    return done / (time.process_time() - start)


def in_process(seconds: float) -> None:
    import logging

    from abplatform_sdk import Client
    from abplatform_sdk import Evaluator as SdkEvaluator

    from assignment.evaluator import Evaluator

    doc = document()
    attrs = {"country": "CN", "platform": "ios"}
    server = Evaluator(doc).flags.evaluate
    sdk = SdkEvaluator({**doc}).flags.evaluate
    logging.getLogger("abplatform_sdk").setLevel(logging.CRITICAL)  # no server on purpose
    client = Client("http://127.0.0.1:9", "bench", refresh_seconds=3600, flush_seconds=3600,
                    max_queue=10**7)
    client._evaluator = SdkEvaluator(doc)  # no server: the configuration is given directly
    experiment = Evaluator(doc).evaluate
    rows = [
        ("server evaluator, 3 rules (force, units, rollout)", lambda u: server("new-checkout", u, attrs)),
        ("server evaluator, 3 rules (.., experiment)", lambda u: server("checkout-color", u, attrs)),
        ("server evaluator, 1 experiment (reference)", lambda u: experiment("exp-0", u, attrs)),
        ("Python SDK evaluator, 3 rules (force, units, rollout)", lambda u: sdk("new-checkout", u, attrs)),
        ("Python SDK Client.get_flag, 3 rules (.., experiment)",
         lambda u: client.get_flag("checkout-color", u, attrs)),
    ]
    print(f"In-process flag evaluations per CPU second (one core), {seconds:.0f} s per row, "
          f"every call a new unit (Python {sys.version.split()[0]})")
    rate(rows[0][1], 0.5)
    for label, fn in rows:
        print(f"  {label:56s} {rate(fn, seconds):>12,.0f} /s", flush=True)
    client.close()


def over_http(args) -> None:
    from statistics import median

    import bench.bench_assignment_http as http

    scenarios = [
        ("POST /assignments, 1 experiment", "POST", "/api/v1/assignments",
         '{"unit_id":"u-%d","attributes":{"country":"CN","platform":"ios"},"experiments":["exp-0"]}'),
        ("POST /flags/evaluate, 3-rule flag", "POST", "/api/v1/flags/evaluate",
         '{"unit_id":"u-%d","attributes":{"country":"CN","platform":"ios"},"flags":["new-checkout"]}'),
        ("POST /flags/evaluate, experiment rule", "POST", "/api/v1/flags/evaluate",
         '{"unit_id":"u-%d","attributes":{"country":"CN","platform":"ios"},"flags":["checkout-color"]}'),
    ]
    import json
    import os
    import shutil
    import subprocess
    import tempfile
    import urllib.request

    wrk = http.ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="bench-flags-"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.bench_settings",
           "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}", "PYTHONPATH": str(ROOT), "DEBUG": "false"}
    env.pop("REDIS_URL", None)
    key = json.loads(subprocess.run(
        [http.PYTHON, "-c", http.SETUP], env=env, cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1])["key"]
    port = http.free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [http.GUNICORN, "bench.bench_flags_wsgi:application", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning"], env=env, cwd=ROOT)
    try:
        http.wait_ready(f"{base}/bench/bare")
        for path, body in [("/api/v1/assignments", b'{"unit_id":"warm"}'),
                           ("/api/v1/flags/evaluate", b'{"unit_id":"warm"}')] * 10:
            req = urllib.request.Request(f"{base}{path}", data=body, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Api-Key {key}"})
            answer = json.loads(urllib.request.urlopen(req, timeout=5).read())
        assert set(answer["flags"]) == {"new-checkout", "checkout-color"}, answer
        pids = http.worker_pids(server.pid)
        print(f"\nHTTP, embedded mode, gunicorn 2 sync workers, wrk -t2 -c{args.connections}, "
              f"{args.rounds} interleaved rounds of {args.duration}s")
        http.run_wrk(wrk, base, key, scenarios[0], 2, args.connections, tmp)  # warm-up
        rounds = [[http.run_wrk(wrk, base, key, s, args.duration, args.connections, tmp, pids)
                   for s in scenarios] for _ in range(args.rounds)]
        print(f"  {'scenario (medians)':40s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} "
              f"{'vs /assignments':>16s} {'cpu us/req':>11s}")
        for i, scenario in enumerate(scenarios):
            runs = [r[i] for r in rounds]
            ratio = median(r[i]["rps"] / r[0]["rps"] for r in rounds)
            errors = sum(x["non2xx"] for x in runs)
            print(f"  {scenario[0]:40s} {median(x['rps'] for x in runs):>9,.0f} "
                  f"{median(x['p50'] for x in runs):>8.2f} {median(x['p99'] for x in runs):>8.2f} "
                  f"{ratio:>15.0%} {median(x['cpu_us'] for x in runs):>11.0f}"
                  + (f"  (non-2xx: {errors})" if errors else ""), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--http", action="store_true", help="also run the HTTP comparison")
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    in_process(args.seconds)
    if args.http:
        over_http(args)


if __name__ == "__main__":
    main()
