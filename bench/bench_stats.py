"""Benchmark: analyze_experiment for 5 metrics x 4 variants with CUPED and sequential on.

Prints the median (and p95) wall time per call. Run: .venv/bin/python bench/bench_stats.py
Goal: median < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.stats import MetricInput, VariantStats, analyze_experiment  # noqa: E402

VARIANTS = ("control", "a", "b", "c")
N = 250_000  # units per variant


def _stats(rng: np.random.Generator, n: int, kind: str, pre_period: bool = True) -> VariantStats:
    """Sufficient statistics of simulated per-unit data (pre-period included except ratios)."""
    pre = rng.gamma(2.0, 2.0, n)
    if kind == "conversion":
        y = (rng.random(n) < 0.08 + 0.02 * (pre > 6)).astype(float)
    elif kind == "count":
        y = rng.poisson(1.0 + 0.3 * pre).astype(float)
    else:
        y = 0.5 * pre + rng.gamma(1.5, 3.0, n)
    x = rng.poisson(1.2, n).astype(float) + 1.0
    kw = {"n": n, "sum": float(y.sum()), "sum_sq": float((y * y).sum())}
    if kind == "ratio":
        kw.update(
            den_sum=float(x.sum()), den_sum_sq=float((x * x).sum()), cross_sum=float((x * y).sum())
        )
    elif pre_period:
        kw.update(
            pre_sum=float(pre.sum()),
            pre_sum_sq=float((pre * pre).sum()),
            pre_cross=float((pre * y).sum()),
        )
    return VariantStats(**kw)


def build_metrics(seed: int = 1) -> list[MetricInput]:
    rng = np.random.default_rng(seed)
    spec = [
        ("purchase", "conversion", "primary", "increase"),
        ("revenue", "sum", "secondary", "increase"),
        ("pageviews", "count", "secondary", "increase"),
        ("aov", "ratio", "secondary", "increase"),
        ("errors", "conversion", "guardrail", "decrease"),  # no pre-period: beta-binomial path
    ]
    metrics = []
    for key, kind, role, direction in spec:
        variants = {v: _stats(rng, N, kind, pre_period=role != "guardrail") for v in VARIANTS}
        metrics.append(MetricInput(key, key.title(), kind, role, direction, variants))
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    metrics = build_metrics()
    kwargs = {
        "experiment": "bench",
        "control": "control",
        "weights": dict.fromkeys(VARIANTS, 1.0),
        "metrics": metrics,
        "sequential": True,
        "cuped": True,
        "planned_sample_size": 4 * 2 * N,
        "daily_units": 50_000.0,
    }
    body = analyze_experiment(**kwargs)  # warm-up (imports, caches)
    size = len(json.dumps(body, allow_nan=False))
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        analyze_experiment(**kwargs)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    p95 = times[int(0.95 * (len(times) - 1))]
    print(f"analyze_experiment: 5 metrics x 4 variants, CUPED + sequential, {args.repeat} runs")
    print(
        f"median {statistics.median(times):.2f} ms  p95 {p95:.2f} ms  min {times[0]:.2f} ms  (goal < 50 ms)"
    )
    print(f"result body {size:,} bytes JSON; recommendation: {body['decision']['recommendation']}")


if __name__ == "__main__":
    main()
