"""In-process evaluator throughput (assignments per second of one core). Prints figures only.

    .venv/bin/python bench/bench_assignment.py [--seconds 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assignment.evaluator import Evaluator  # noqa: E402


def _experiment(key, **extra):
    spec = {
        "key": key, "status": "running", "salt": key, "traffic_allocation": 100.0,
        "layer": None, "layer_range": None,
        "variants": [
            {"key": "control", "weight": 50.0, "is_control": True, "payload": {}},
            {"key": "green", "weight": 50.0, "is_control": False, "payload": {"color": "green"}},
        ],
        "targeting": [], "overrides": {"qa-user-1": "green"}, "shipped_variant": None,
    }
    spec.update(extra)
    return spec


def document():
    country = [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}]
    experiments = [
        _experiment("plain"),
        _experiment("targeted", targeting=country),
        _experiment("layered", targeting=country, layer="checkout", layer_range=[500, 10000],
                    traffic_allocation=80.0),
    ]
    experiments += [_experiment(f"many-{i}", targeting=country if i % 2 else []) for i in range(10)]
    return {"schema_version": 1, "version": "bench", "hash": {"algorithm": "sha256", "buckets": 10000},
            "layers": {"checkout": {"salt": "checkout", "holdout_percent": 5.0}},
            "experiments": experiments}


def rate(fn, n_units: int, per_call: int, seconds: float) -> float:
    """Assignments per CPU second of this (single-threaded) process: per core, and robust
    when other processes share the machine."""
    units = [f"user-{i}" for i in range(n_units)]
    done, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for unit in units:
            fn(unit)
        done += len(units)
    return done * per_call / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    evaluator = Evaluator(document())
    attrs = {"country": "CN", "platform": "ios"}
    many = [f"many-{i}" for i in range(10)]
    evaluate, evaluate_many = evaluator.evaluate, evaluator.evaluate_many
    rows = [
        ("1 experiment, no targeting", lambda u: evaluate("plain", u, attrs), 1),
        ("1 experiment, 1 targeting rule", lambda u: evaluate("targeted", u, attrs), 1),
        ("1 layered experiment + targeting", lambda u: evaluate("layered", u, attrs), 1),
        ("10 experiments per call (evaluate_many)", lambda u: evaluate_many(u, attrs, many), 10),
    ]
    print(f"In-process evaluator, assignments per CPU second (one core), {args.seconds:.0f} s per row (Python {sys.version.split()[0]})")
    rate(rows[0][1], 10_000, 1, 0.5)  # warm up (CPU clocks, allocator)
    for label, fn, per_call in rows:
        print(f"  {label:42s} {rate(fn, 10_000, per_call, args.seconds):>12,.0f} assignments/s")


if __name__ == "__main__":
    main()
