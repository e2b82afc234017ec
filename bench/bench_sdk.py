"""Python SDK: local evaluations per CPU second of one core, exposure logging on. Prints figures.

    .venv/bin/python bench/bench_sdk.py [--seconds 1] [--rounds 3]

The GrowthBook comparison needs the bench-only extra: ``pip install '.[bench]'`` (or
``pip install growthbook==4.0.0``); without it those rows read n/a.

Scenarios, all on the same experiments (``plain`` 50/50; ``targeted``, the same with one ``in``
rule; ``layered``, the same in half of a layer), the same attributes (``{"country": "CN"}``)
and the same units (a pool of 200,000 distinct ids built before timing, so no scenario pays
for making them). Each is timed with ``time.process_time`` in chunks of a few milliseconds,
all scenarios interleaved chunk by chunk, so that they share the load of a busy machine:

* ``server``: the server's own evaluator (``assignment.evaluator.Evaluator.evaluate``), no logging;
* ``sdk eval``: the SDK's ``Evaluator.evaluate``, no logging;
* ``sdk+log new``: ``Client.assign`` with exposure logging, every call a unit not seen before
  (the pool is far larger than what the dedupe remembers), so every enrolled one is queued;
  the queue is emptied after each chunk as the flusher would (its JSON is not counted);
* ``server dicts`` and ``sdk+log new dicts``: ``server`` and ``sdk+log new`` with the caller
  building a new attributes dict for every call (as a request handler does), where the SDK
  cannot share one snapshot of an unchanged mapping but copies each;
* ``sdk+log new+send``: the same with the sending counted too (batches taken off the queue,
  their JSON, the answer parsed; a server that answers at once, no socket);
* ``sdk+log repeat``: ``Client.assign`` on 1,000 units again and again (deduplicated: the
  common case of a unit evaluated on every page view);
* ``sdk+log 1 new in 5``: each unit five times within 5,000 calls (one exposure queued, four
  deduplicated);
* ``growthbook``: the GrowthBook Python SDK on the equivalent experiment (50/50, the targeting
  rule as a condition, the layer as a namespace), a tracking callback appending to a list,
  used both ways it is used (one ``GrowthBook`` per unit, or one whose attributes are set per
  unit); the faster of the two counts.

Each figure is the median over ``--rounds`` with the range; ratios are taken within each
round, then summarised the same way.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sdk" / "python"))

from abplatform_sdk import Client  # noqa: E402
from abplatform_sdk import Evaluator as SdkEvaluator  # noqa: E402
from abplatform_sdk.client import _wire  # noqa: E402

from assignment.evaluator import Evaluator as ServerEvaluator  # noqa: E402

ATTRIBUTES = {"country": "CN"}
COUNTRY = [{"attribute": "country", "operator": "in", "values": ["CN", "US"]}]
EXPERIMENTS = ("plain", "targeted", "layered")
POOL = 200_000


def document() -> dict:
    def experiment(key, **extra):
        spec = {"key": key, "status": "running", "salt": key, "phase": 1, "traffic_allocation": 100.0,
                "layer": None, "layer_range": None, "targeting": [], "overrides": {},
                "shipped_variant": None, "variants": [
                    {"key": "control", "weight": 50.0, "is_control": True, "payload": {}},
                    {"key": "green", "weight": 50.0, "is_control": False, "payload": {"color": "green"}}]}
        spec.update(extra)
        return spec

    return {"schema_version": 1, "version": "bench", "hash": {"algorithm": "sha256", "buckets": 10000},
            "layers": {"checkout": {"salt": "checkout", "holdout_percent": 0}},
            "experiments": [experiment("plain"), experiment("targeted", targeting=COUNTRY),
                            experiment("layered", layer="checkout", layer_range=[0, 5000])]}


def rates(loops: dict[str, tuple[Callable[[list[str]], None], list[str], int]],
          seconds: float) -> dict[str, float]:
    """Evaluations per CPU second of each ``(loop, units, chunk)``, timed interleaved chunk by
    chunk (a chunk of a few milliseconds each) so that all of them see the same load on a
    shared machine; each loop cycles through its own units."""
    done = dict.fromkeys(loops, 0)
    spent = dict.fromkeys(loops, 0.0)
    position = dict.fromkeys(loops, 0)
    clock = time.process_time
    while min(spent.values()) < seconds:
        for name, (loop, units, chunk) in loops.items():
            if spent[name] >= seconds:
                continue
            start = position[name] % len(units)
            part = units[start:start + chunk]
            position[name] = start + len(part)
            began = clock()
            loop(part)
            spent[name] += clock() - began
            done[name] += len(part)
    return {name: done[name] / spent[name] for name in loops}


def server_loop(evaluator: ServerEvaluator, key: str) -> Callable[[list[str]], None]:
    def loop(units: list[str], evaluate=evaluator.evaluate, attrs=ATTRIBUTES) -> None:
        for unit in units:
            evaluate(key, unit, attrs)
    return loop


def server_dicts_loop(evaluator: ServerEvaluator, key: str) -> Callable[[list[str]], None]:
    def loop(units: list[str], evaluate=evaluator.evaluate) -> None:
        for unit in units:
            evaluate(key, unit, {"country": "CN"})
    return loop


def sdk_assign_dicts_loop(client: Client, key: str, after: Callable[[], object]) -> Callable[[list[str]], None]:
    def loop(units: list[str], assign=client.assign) -> None:
        for unit in units:
            assign(key, unit, {"country": "CN"})
        after()
    return loop


def sdk_eval_loop(evaluator: SdkEvaluator, key: str) -> Callable[[list[str]], None]:
    def loop(units: list[str], evaluate=evaluator.evaluate, attrs=ATTRIBUTES) -> None:
        for unit in units:
            evaluate(key, unit, attrs)
    return loop


def sdk_assign_loop(client: Client, key: str, after: Callable[[], object] | None = None
                    ) -> Callable[[list[str]], None]:
    """``Client.assign`` over the units, then ``after`` (the flusher's share of the work)."""
    def loop(units: list[str], assign=client.assign, attrs=ATTRIBUTES) -> None:
        for unit in units:
            assign(key, unit, attrs)
        if after is not None:
            after()
    return loop


class NullClient(Client):
    """A client whose server accepts every batch at once (no socket): what sending costs the
    process is the batch taken off the queue, its JSON, and the answer parsed."""

    def _request(self, method, path, body=None, headers=None):
        from abplatform_sdk.client import _Response

        return _Response(202, {}, b'{"accepted": 200, "rejected": []}')


def growthbook_loops(key: str) -> list[Callable[[list[str]], None]] | None:
    try:
        from growthbook import Experiment, GrowthBook
    except ImportError:
        return None
    tracked: list = []

    def track(experiment, result, *rest, **kwargs):
        tracked.append((experiment.key, result.key))
        if len(tracked) > 10_000:
            tracked.clear()

    extra = {"targeted": {"condition": {"country": {"$in": ["CN", "US"]}}},
             "layered": {"namespace": ("checkout", 0.0, 0.5)}}.get(key, {})
    exp = Experiment(key=key, variations=["control", "green"], weights=[0.5, 0.5], **extra)

    def per_unit(units: list[str]) -> None:
        for unit in units:
            GrowthBook(attributes={"id": unit, **ATTRIBUTES}, on_experiment_viewed=track).run(exp)

    def shared_instance(units: list[str]) -> None:
        gb = GrowthBook(attributes={}, on_experiment_viewed=track)  # per chunk: its memory of tracked units
        for unit in units:
            gb.set_attributes({"id": unit, **ATTRIBUTES})
            gb.run(exp)

    return [per_unit, shared_instance]


def flush_cost(client_doc: dict, n: int = 20_000) -> float:
    """Seconds of the flusher's CPU per exposure: the wire dict and JSON of a full batch."""
    items = [(("plain", "green", "bench", 1), f"user-{i}", time.time(), dict(ATTRIBUTES)) for i in range(n)]
    start = time.process_time()
    for i in range(0, n, 200):
        json.dumps({"exposures": [_wire(item) for item in items[i:i + 200]]}, separators=(",", ":")).encode()
    return (time.process_time() - start) / n


def summary(values: list[float], fmt: str = "{:,.0f}") -> str:
    if not values:
        return "n/a"
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per figure")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    doc = document()
    server = ServerEvaluator(doc)
    sdk = SdkEvaluator(doc)
    units = [f"user-{i}" for i in range(POOL)]
    repeated = units[:1_000]
    # each unit five times within 5,000 calls: one new, four repeats (a unit per page view)
    mixed = [units[i // 5_000 * 1_000 + i % 1_000] for i in range(POOL)]
    figures: dict[tuple[str, str], list[float]] = {}
    queued = dropped = 0
    for _ in range(args.rounds):
        for key in EXPERIMENTS:
            client = Client("http://127.0.0.1:9", "bench", bootstrap=doc, start=False, max_queue=100_000)
            sender = NullClient("http://127.0.0.1:9", "bench", bootstrap=doc, start=False, max_queue=100_000)
            repeater = Client("http://127.0.0.1:9", "bench", bootstrap=doc, start=False, max_queue=100_000)
            mixer = Client("http://127.0.0.1:9", "bench", bootstrap=doc, start=False, max_queue=100_000)
            dicts = Client("http://127.0.0.1:9", "bench", bootstrap=doc, start=False, max_queue=100_000)
            loops = {
                "server": (server_loop(server, key), units, 5_000),
                "sdk eval": (sdk_eval_loop(sdk, key), units, 5_000),
                # the queue emptied after each chunk, as the flusher would (its JSON not counted)
                "sdk+log new": (sdk_assign_loop(client, key, client._queue.clear), units, 5_000),
                "server dicts": (server_dicts_loop(server, key), units, 5_000),
                "sdk+log new dicts": (sdk_assign_dicts_loop(dicts, key, dicts._queue.clear), units, 5_000),
                "sdk+log new+send": (sdk_assign_loop(sender, key, sender.flush), units, 1_000),
                "sdk+log repeat": (sdk_assign_loop(repeater, key), repeated, 5_000),
                "sdk+log 1 new in 5": (sdk_assign_loop(mixer, key, mixer._queue.clear), mixed, 5_000),
            }
            for i, loop in enumerate(growthbook_loops(key) or []):
                loops[f"growthbook {i}"] = (loop, units, 250)
            row = rates(loops, args.seconds)
            if "growthbook 0" in row:
                row["growthbook"] = max(row.pop("growthbook 0"), row.pop("growthbook 1"))
            for c in (client, sender, repeater, mixer, dicts):
                stats = c.stats
                queued, dropped = queued + stats["queued"], dropped + stats["dropped"]
            for name, value in row.items():
                figures.setdefault((key, name), []).append(value)
            figures.setdefault((key, "eval/server"), []).append(row["sdk eval"] / row["server"])
            figures.setdefault((key, "new/server"), []).append(row["sdk+log new"] / row["server"])
            figures.setdefault((key, "dicts/server"), []).append(row["sdk+log new dicts"] / row["server dicts"])
            figures.setdefault((key, "new+send/server"), []).append(row["sdk+log new+send"] / row["server"])
            figures.setdefault((key, "repeat/server"), []).append(row["sdk+log repeat"] / row["server"])
            figures.setdefault((key, "mix/server"), []).append(row["sdk+log 1 new in 5"] / row["server"])
            if "growthbook" in row:
                figures.setdefault((key, "new/GB"), []).append(row["sdk+log new"] / row["growthbook"])
    print(f"Python {sys.version.split()[0]}; evaluations per CPU second of one core; median (min-max) "
          f"of {args.rounds} rounds of {args.seconds:g} s; exposures queued {queued:,}, dropped "
          f"{dropped:,}")
    columns = ("server", "sdk eval", "sdk+log new", "server dicts", "sdk+log new dicts", "sdk+log new+send",
               "sdk+log repeat",
               "sdk+log 1 new in 5", "growthbook")
    for key in EXPERIMENTS:
        print(f"\n{key}:")
        for name in columns:
            print(f"  {name:<18} {summary(figures.get((key, name), []))}")
        for name in ("eval/server", "new/server", "dicts/server", "new+send/server", "repeat/server", "mix/server", "new/GB"):
            print(f"  {name:<18} {summary(figures.get((key, name), []), '{:.2f}x')}")
    print(f"\nflusher (background thread): {flush_cost(doc) * 1e6:.2f} µs of CPU per exposure sent")
    if not any(k[1] == "growthbook" for k in figures):
        print("growthbook is not installed: pip install '.[bench]' to compare")


if __name__ == "__main__":
    main()
