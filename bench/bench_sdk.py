"""Python SDK: local evaluations per CPU second of one core, exposure logging on. Prints figures.

    .venv/bin/python bench/bench_sdk.py [--seconds 2]

Every evaluation is of a distinct unit, so every one that enrols queues an exposure (no
deduplication helps). Compared in the same run with the server's own evaluator
(``assignment.evaluator``, no logging) and, when ``growthbook`` is installed, with the GrowthBook
Python SDK on the equivalent experiments (50/50, the same targeting as a condition, a tracking
callback that appends to a list), measured both ways it is used: one ``GrowthBook`` per unit,
and one instance whose attributes are set per unit; the faster of the two is compared.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sdk" / "python"))

from abplatform_sdk import Client  # noqa: E402

from assignment.evaluator import Evaluator as ServerEvaluator  # noqa: E402

COUNTRY = [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}]


def document() -> dict:
    def experiment(key, **extra):
        spec = {"key": key, "status": "running", "salt": key, "traffic_allocation": 100.0,
                "layer": None, "layer_range": None, "targeting": [], "overrides": {},
                "shipped_variant": None, "variants": [
                    {"key": "control", "weight": 50.0, "is_control": True, "payload": {}},
                    {"key": "green", "weight": 50.0, "is_control": False, "payload": {"color": "green"}}]}
        spec.update(extra)
        return spec

    return {"schema_version": 1, "version": "bench", "hash": {"algorithm": "sha256", "buckets": 10000},
            "layers": {}, "experiments": [experiment("plain"), experiment("targeted", targeting=COUNTRY)]}


def rate(fn, seconds: float, batch: int = 20_000) -> float:
    done, n, start = 0, 0, time.process_time()
    while time.process_time() - start < seconds:
        for i in range(n, n + batch):
            fn(f"user-{i}")
        n += batch
        done += batch
    return done / (time.process_time() - start)


def growthbook_rates(seconds: float) -> dict[str, float] | None:
    try:
        from growthbook import Experiment, GrowthBook
    except ImportError:
        return None
    tracked: list = []

    def track(experiment, result, *rest, **kwargs):
        tracked.append((experiment.key, result.key))

    experiments = {
        "plain": Experiment(key="plain", variations=["control", "green"], weights=[0.5, 0.5]),
        "targeted": Experiment(key="targeted", variations=["control", "green"], weights=[0.5, 0.5],
                               condition={"country": {"$in": ["CN", "US"]}}),
    }
    out = {}
    for name, exp in experiments.items():
        def per_unit(unit, exp=exp):
            GrowthBook(attributes={"id": unit, "country": "CN"}, on_experiment_viewed=track).run(exp)

        shared = GrowthBook(attributes={}, on_experiment_viewed=track)

        def shared_instance(unit, exp=exp, gb=shared):
            gb.set_attributes({"id": unit, "country": "CN"})
            gb.run(exp)

        out[name] = max(rate(per_unit, seconds, 5_000), rate(shared_instance, seconds, 5_000))
        tracked.clear()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    doc = document()
    server = ServerEvaluator(doc)
    client = Client("http://127.0.0.1:9", "bench", bootstrap=doc, start=False, max_queue=10_000)
    gb = growthbook_rates(args.seconds)
    rows = []
    for key in ("plain", "targeted"):
        attrs = {"country": "CN"}
        sdk = rate(lambda u, k=key, a=attrs: client.assign(k, u, a), args.seconds)
        ref = rate(lambda u, k=key, a=attrs: server.evaluate(k, u, a), args.seconds)
        rows.append((key, sdk, ref, gb[key] if gb else None))
    print(f"Python {sys.version.split()[0]}; evaluations per CPU second of one core; "
          f"exposures queued: {client.stats['queued']:,}, dropped (queue bound 10,000, no server): "
          f"{client.stats['dropped']:,}")
    print(f"{'experiment':<10} {'SDK+exposures':>14} {'server evaluator':>17} {'GrowthBook':>11} {'SDK/GB':>7}")
    for key, sdk, ref, g in rows:
        gtxt = f"{g:>11,.0f}" if g else f"{'n/a':>11}"
        ratio = f"{sdk / g:>6.1f}x" if g else f"{'n/a':>7}"
        print(f"{key:<10} {sdk:>14,.0f} {ref:>17,.0f} {gtxt} {ratio}")
    if gb is None:
        print("growthbook is not installed: pip install growthbook to compare")


if __name__ == "__main__":
    main()
