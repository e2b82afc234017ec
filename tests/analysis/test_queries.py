"""Aggregation SQL (analysis.queries) against a plain-Python reference on the same rows.

Runs on SQLite and again on PostgreSQL (every db test does). Timestamps carry microseconds and
events sit exactly on window boundaries, so both databases must agree with the reference to the
microsecond.
"""
from __future__ import annotations

import dataclasses
import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from analysis import privacy, queries
from analysis.models import Event
from analysis.stats import VariantStats
from analysis.stats.quantile import order_statistics
from assignment import exposures as exposure_buffer
from assignment.models import Exposure
from experiments import services
from experiments.models import Metric

T0 = datetime(2026, 11, 20, 12, 0, 0, 250_000, tzinfo=UTC)
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)

METRICS = {
    "conv": dict(event="purchase", kind="conversion", conversion_window_hours=48),
    "orders": dict(event="purchase", kind="count", cap=3),
    "revenue": dict(event="purchase", kind="sum", cap=100.0, conversion_window_hours=72),
    "rpo": dict(event="purchase", kind="ratio", numerator_aggregation="sum", cap=150.0,
                denominator_event="checkout", denominator_aggregation="count"),
    "views": dict(event="page_view", kind="count", conversion_window_hours=24),
    "p90": dict(event="purchase", kind="quantile", quantile=0.9, numerator_aggregation="sum",
                conversion_window_hours=72),
}


def make_experiment(key="exp", metrics=tuple(METRICS), *, cuped=True, variants=("control", "a", "b")):
    for mkey in metrics:
        Metric.objects.get_or_create(key=mkey, defaults={"name": mkey, **METRICS[mkey]})
    weights = [100 // len(variants)] * len(variants)
    weights[0] += 100 - sum(weights)
    return services.create_experiment({
        "key": key, "name": key, "traffic_allocation": 100, "cuped": cuped,
        "variants": [{"key": v, "weight": w, "is_control": i == 0}
                     for i, (v, w) in enumerate(zip(variants, weights, strict=True))],
        "metrics": [{"metric": m, "role": "primary"} for m in metrics],
        "targeting": [],
    })


def expose(experiment, unit, variant, first_seen, **attributes):
    variant = experiment.variants.get(key=variant)
    return Exposure.objects.create(experiment=experiment, variant=variant, unit_id=unit,
                                   first_seen=first_seen, last_seen=first_seen, attributes=attributes)


_ids = iter(range(10**9))


def event(unit, name, ts, value=None):
    return Event(event_id=f"e{next(_ids)}", unit_id=unit, event=name, value=value, timestamp=ts)


def store(*events):
    Event.objects.bulk_create(events)


# --- the reference: loops over rows ----------------------------------------------------------


def _unit_value(metric, x, evs, phase, until):
    w = metric.conversion_window_hours
    if phase == "post":
        lo, hi = x.first_seen, (x.first_seen + w * HOUR if w else None)
    else:
        lo, hi = x.first_seen - (w or 14 * 24) * HOUR, x.first_seen

    def agg(name, how):
        sel = [e for e in evs if e.event == name and lo <= e.timestamp
               and (hi is None or e.timestamp < hi) and (until is None or e.timestamp < until)]
        return float(len(sel)) if how == "count" else float(sum(e.value or 0.0 for e in sel))

    kind = metric.kind
    if kind == "conversion":
        return (1.0 if agg(metric.event, "count") > 0 else 0.0), None
    how = {"count": "count", "sum": "sum"}.get(kind, metric.numerator_aggregation)
    y = agg(metric.event, how)
    if metric.cap is not None:
        y = min(y, metric.cap)
    d = agg(metric.denominator_event or metric.event, metric.denominator_aggregation) if kind == "ratio" else None
    return y, d


def _segment(x, attribute):
    value = x.attributes.get(attribute)
    if value is None:
        return queries.NONE_SEGMENT
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def reference(experiment, *, until=None, attribute=None, max_segments=20):
    variants = {v.pk: v.key for v in experiment.variants.all()}
    links = experiment.experiment_metrics.select_related("metric").all()
    xs = [x for x in Exposure.objects.filter(experiment=experiment) if until is None or x.first_seen < until]
    by_unit = defaultdict(list)
    for e in Event.objects.all():
        by_unit[e.unit_id].append(e)
    seg_of = {x.pk: (_segment(x, attribute) if attribute else None) for x in xs}
    if attribute:
        sizes = defaultdict(int)
        for s in seg_of.values():
            sizes[s] += 1
        ranked = sorted(sizes, key=lambda s: (-sizes[s], s))
        keep = set(ranked[:max_segments])
        seg_of = {k: (s if s in keep else queries.OTHER_SEGMENT) for k, s in seg_of.items()}
    out = {}
    for seg in sorted(set(seg_of.values()), key=str) or ([None] if not attribute else []):
        per_metric = {}
        for link in links:
            m = link.metric
            if m.kind == "quantile":
                per_metric[m.key] = _quantile_reference(experiment, m, variants, xs, seg_of, seg, by_unit, until)
                continue
            pre = experiment.cuped
            per_variant = {}
            for vid, vkey in variants.items():
                acc = defaultdict(float)
                n = 0
                for x in xs:
                    if x.variant_id != vid or seg_of[x.pk] != seg:
                        continue
                    n += 1
                    y, d = _unit_value(m, x, by_unit[x.unit_id], "post", until)
                    acc["sum"] += y
                    acc["sum_sq"] += y * y
                    if d is not None:
                        acc["den_sum"] += d
                        acc["den_sum_sq"] += d * d
                        acc["cross_sum"] += y * d
                    if pre:
                        p, pd = _unit_value(m, x, by_unit[x.unit_id], "pre", until)
                        acc["pre_sum"] += p
                        acc["pre_sum_sq"] += p * p
                        acc["pre_cross"] += p * y
                        if pd is not None:  # ratio: CUPED needs the pre-period denominator too
                            acc["pre_den_sum"] += pd
                            acc["pre_den_sum_sq"] += pd * pd
                            acc["pre_num_den"] += p * pd
                            acc["pre_num_x_den"] += p * d
                            acc["pre_den_x_num"] += pd * y
                            acc["pre_den_x_den"] += pd * d
                ratio = m.kind == "ratio"
                ys = [_unit_value(m, x, by_unit[x.unit_id], "post", until)[0] for x in xs
                      if x.variant_id == vid and seg_of[x.pk] == seg]
                mean = sum(ys) / len(ys) if ys else 0.0
                moments = m.kind in ("count", "sum") and n > 0
                per_variant[vkey] = VariantStats(
                    m2=sum((y - mean) ** 2 for y in ys) if moments else None,
                    m3=sum((y - mean) ** 3 for y in ys) if moments else None,
                    n=n, sum=acc["sum"], sum_sq=acc["sum_sq"],
                    den_sum=acc["den_sum"] if ratio else None,
                    den_sum_sq=acc["den_sum_sq"] if ratio else None,
                    cross_sum=acc["cross_sum"] if ratio else None,
                    pre_sum=acc["pre_sum"] if pre else None,
                    pre_sum_sq=acc["pre_sum_sq"] if pre else None,
                    pre_cross=acc["pre_cross"] if pre else None,
                    **{k: (acc[k] if pre and ratio else None) for k in RATIO_PRE},
                )
            per_metric[m.key] = per_variant
        out[seg] = per_metric
    return out


def _quantile_reference(experiment, m, variants, xs, seg_of, seg, by_unit, until):
    """Order statistics of the per-unit values of the units with at least one event."""
    out = {}
    for vid, vkey in variants.items():
        values = []
        for x in xs:
            if x.variant_id != vid or seg_of[x.pk] != seg:
                continue
            w = m.conversion_window_hours
            evs = [e for e in by_unit[x.unit_id] if e.event == m.event and x.first_seen <= e.timestamp
                   and (not w or e.timestamp < x.first_seen + w * HOUR) and (until is None or e.timestamp < until)]
            if evs:
                values.append(float(len(evs)) if m.numerator_aggregation == "count"
                              else float(sum(max(-queries.VALUE_LIMIT, min(queries.VALUE_LIMIT, e.value or 0.0))
                                             for e in evs)))
        o = order_statistics(values, float(m.quantile), experiment.significance_level)
        out[vkey] = VariantStats(n=o.n, quantile_value=o.value, quantile_lower=o.lower, quantile_upper=o.upper,
                                 lower_rank=o.lower_rank, upper_rank=o.upper_rank)
    return out


def raw(vs: VariantStats) -> VariantStats:
    """The raw sums only (centred moments are checked separately against the reference)."""
    return dataclasses.replace(vs, m2=None, m3=None)


RATIO_PRE = ("pre_den_sum", "pre_den_sum_sq", "pre_num_den", "pre_num_x_den", "pre_den_x_num", "pre_den_x_den")
FIELDS = ("n", "sum", "sum_sq", "den_sum", "den_sum_sq", "cross_sum", "pre_sum", "pre_sum_sq", "pre_cross",
          *RATIO_PRE, "quantile_value", "quantile_lower", "quantile_upper", "lower_rank", "upper_rank")


def assert_same(got: VariantStats, want: VariantStats, where=""):
    for name in FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        if b is None:
            assert a is None, f"{where}.{name}: {a!r} != None"
        else:
            assert a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{where}.{name}: {a!r} != {b!r}"
    for name in ("m2", "m3"):
        a, b = getattr(got, name), getattr(want, name)
        if b is None:
            assert a is None, f"{where}.{name}: {a!r} != None"
        else:  # centred sums are compared at the scale of the raw ones they are derived from
            scale = max(1.0, want.sum_sq) ** (1.0 if name == "m2" else 1.5)
            assert a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * scale), f"{where}.{name}: {a!r} != {b!r}"


def assert_tables_equal(got, want):
    assert set(got) == set(want)
    for mkey in want:
        assert set(got[mkey]) == set(want[mkey]), mkey
        for vkey in want[mkey]:
            assert_same(got[mkey][vkey], want[mkey][vkey], f"{mkey}.{vkey}")


# --- random data, checked against the reference ------------------------------------------------

BOUNDARIES = [timedelta(0), -US, 24 * HOUR, 24 * HOUR - US, 48 * HOUR, 48 * HOUR - US, 72 * HOUR,
              -48 * HOUR, -48 * HOUR - US, -336 * HOUR, -336 * HOUR - US, -24 * HOUR]


@pytest.fixture
def random_experiment(db):
    rng = random.Random(20261124)
    experiment = make_experiment()
    variants = ["control", "a", "b"]
    events = []
    for i in range(45):
        unit = f"u{i}"
        first_seen = T0 + timedelta(seconds=rng.randrange(0, 5 * 86400), microseconds=rng.randrange(10**6))
        attributes = {}
        if rng.random() < 0.8:
            attributes["country"] = rng.choice(["CN", "US", "US", "DE", "FR", "BR"])
        attributes["beta"] = rng.random() < 0.5
        attributes["age"] = rng.choice([18, 30, 45])
        expose(experiment, unit, rng.choice(variants), first_seen, **attributes)
        for _ in range(rng.randrange(0, 9)):
            name = rng.choice(["purchase", "purchase", "checkout", "page_view", "other"])
            if rng.random() < 0.3:
                ts = first_seen + rng.choice(BOUNDARIES)
            else:
                ts = first_seen + timedelta(seconds=rng.uniform(-20 * 86400, 6 * 86400))
            value = None if rng.random() < 0.15 else round(rng.uniform(-5, 120), 2)
            events.append(event(unit, name, ts, value))
    # Events of units that were never exposed are ignored.
    events += [event("stranger", "purchase", T0 + HOUR, 10.0) for _ in range(3)]
    store(*events)
    return experiment


def test_metric_statistics_match_the_reference(random_experiment):
    got = queries.metric_statistics(random_experiment)
    want = reference(random_experiment)[None]
    assert_tables_equal(got, want)
    assert sum(vs.n for vs in got["conv"].values()) == 45
    assert any(vs.pre_sum for vs in got["revenue"].values())  # the data exercises CUPED sums


@pytest.mark.parametrize("days", [0.5, 2, 3.5])
def test_until_matches_the_reference(random_experiment, days):
    until = T0 + timedelta(days=days, microseconds=1)
    got = queries.metric_statistics(random_experiment, until=until)
    assert_tables_equal(got, reference(random_experiment, until=until)[None])
    assert sum(vs.n for vs in got["conv"].values()) < 45
    assert queries.exposure_counts(random_experiment, until=until) == {
        k: vs.n for k, vs in got["conv"].items()
    }


@pytest.mark.parametrize(("attribute", "max_segments"), [("country", 20), ("country", 2), ("beta", 20), ("age", 1)])
def test_segment_statistics_match_the_reference(random_experiment, attribute, max_segments):
    got = queries.segment_statistics(random_experiment, attribute, max_segments=max_segments)
    want = reference(random_experiment, attribute=attribute, max_segments=max_segments)
    assert set(got) == set(want)
    for seg in want:
        assert_tables_equal(got[seg], want[seg])
    assert len(got) <= max_segments + 1
    if max_segments == 2:
        assert list(got)[-1] == queries.OTHER_SEGMENT
    if attribute == "beta":
        assert set(got) == {"true", "false"}
    if attribute == "country":
        assert queries.NONE_SEGMENT in got or max_segments < 6


def test_segment_statistics_with_until(random_experiment):
    until = T0 + timedelta(days=2)
    got = queries.segment_statistics(random_experiment, "country", until=until)
    want = reference(random_experiment, attribute="country", until=until)
    assert set(got) == set(want)
    for seg in want:
        assert_tables_equal(got[seg], want[seg])


# --- the rules, one by one, with hand-computed figures ---------------------------------------


def test_conversion_window_is_half_open_to_the_microsecond(db):
    exp = make_experiment(metrics=("conv",), cuped=False, variants=("control", "b"))
    expose(exp, "in-at-start", "control", T0)
    expose(exp, "in-just-before-end", "control", T0)
    expose(exp, "out-at-end", "control", T0)
    expose(exp, "out-before-exposure", "control", T0)
    store(
        event("in-at-start", "purchase", T0),
        event("in-just-before-end", "purchase", T0 + 48 * HOUR - US),
        event("out-at-end", "purchase", T0 + 48 * HOUR),
        event("out-before-exposure", "purchase", T0 - US),
    )
    stats = queries.metric_statistics(exp)["conv"]
    assert stats["control"] == VariantStats(n=4, sum=2.0, sum_sq=2.0)
    assert stats["b"] == VariantStats(n=0, sum=0.0, sum_sq=0.0)


def test_a_unit_counts_in_the_variant_of_its_first_exposure(db):
    exp = make_experiment(metrics=("orders",), cuped=False, variants=("control", "b"))
    control, b = (exp.variants.get(key=k) for k in ("control", "b"))
    later, earlier = (T0 + 5 * HOUR).timestamp(), T0.timestamp()
    # The unit was seen in b later and in control first: it belongs to control from T0 on.
    exposure_buffer.upsert([(exp.pk, b.pk, "u1", later, {}), (exp.pk, control.pk, "u1", earlier, {})])
    store(event("u1", "purchase", T0 + HOUR), event("u1", "purchase", T0 - HOUR))
    stats = queries.metric_statistics(exp)["orders"]
    assert stats["control"].n == 1 and stats["control"].sum == 1.0
    assert stats["b"].n == 0 and stats["b"].sum == 0.0


def test_caps_apply_per_unit_before_summing(db):
    exp = make_experiment(metrics=("orders", "revenue", "rpo"), cuped=False, variants=("control", "b"))
    expose(exp, "big", "control", T0)
    expose(exp, "small", "control", T0)
    store(*[event("big", "purchase", T0 + i * HOUR, 60.0) for i in range(5)])  # 5 orders, 300
    store(event("big", "checkout", T0 + HOUR), event("big", "checkout", T0 + 2 * HOUR))
    store(event("small", "purchase", T0 + HOUR, 20.0), event("small", "checkout", T0 + HOUR))
    stats = queries.metric_statistics(exp)
    assert raw(stats["orders"]["control"]) == VariantStats(n=2, sum=3.0 + 1.0, sum_sq=9.0 + 1.0)  # cap 3
    assert raw(stats["revenue"]["control"]) == VariantStats(n=2, sum=100.0 + 20.0, sum_sq=100.0**2 + 20.0**2)
    assert stats["revenue"]["control"].m2 == pytest.approx(2 * 40.0**2)  # about the mean 60
    # Ratio: the numerator is capped at 150 per unit, the denominator is not.
    rpo = stats["rpo"]["control"]
    assert (rpo.sum, rpo.sum_sq) == (150.0 + 20.0, 150.0**2 + 20.0**2)
    assert (rpo.den_sum, rpo.den_sum_sq, rpo.cross_sum) == (3.0, 5.0, 150.0 * 2 + 20.0 * 1)
    assert rpo.pre_sum is None


def test_units_without_events_count_as_zero(db):
    exp = make_experiment(metrics=("conv", "revenue", "rpo"), cuped=True, variants=("control", "b"))
    for i in range(3):
        expose(exp, f"quiet-{i}", "b", T0)
    expose(exp, "buyer", "b", T0)
    store(event("buyer", "purchase", T0 + HOUR, 10.0))
    stats = queries.metric_statistics(exp)
    assert stats["conv"]["b"] == VariantStats(n=4, sum=1.0, sum_sq=1.0, pre_sum=0.0, pre_sum_sq=0.0, pre_cross=0.0)
    assert stats["revenue"]["b"].n == 4 and stats["revenue"]["b"].sum == 10.0
    zeros = dict.fromkeys(("pre_sum", "pre_sum_sq", "pre_cross", "pre_den_sum", "pre_den_sum_sq", "pre_num_den",
                           "pre_num_x_den", "pre_den_x_num", "pre_den_x_den"), 0.0)
    assert stats["rpo"]["b"] == VariantStats(n=4, sum=10.0, sum_sq=100.0, den_sum=0.0, den_sum_sq=0.0, cross_sum=0.0,
                                             **zeros)
    assert stats["conv"]["control"] == VariantStats(n=0, sum=0.0, sum_sq=0.0, pre_sum=0.0, pre_sum_sq=0.0, pre_cross=0.0)


def test_pre_period_sums_for_cuped(db):
    exp = make_experiment(metrics=("revenue", "orders"), cuped=True, variants=("control", "b"))
    expose(exp, "u1", "control", T0)
    expose(exp, "u2", "control", T0 + HOUR)
    store(
        # u1: revenue window 72 h -> pre-period [T0 - 72 h, T0); orders has none -> 14 days.
        event("u1", "purchase", T0 - 72 * HOUR, 30.0),        # in both pre-periods
        event("u1", "purchase", T0 - 72 * HOUR - US, 1000.0),  # only in the 14-day one
        event("u1", "purchase", T0 - 336 * HOUR - US, 7.0),    # in neither
        event("u1", "purchase", T0 + HOUR, 50.0),              # post
        event("u2", "purchase", T0 + HOUR - US, 500.0),        # u2's pre-period, capped at 100
    )
    stats = queries.metric_statistics(exp)
    revenue = stats["revenue"]["control"]
    assert (revenue.sum, revenue.sum_sq) == (50.0, 2500.0)
    assert (revenue.pre_sum, revenue.pre_sum_sq, revenue.pre_cross) == (30.0 + 100.0, 900.0 + 10000.0, 30.0 * 50.0)
    orders = stats["orders"]["control"]
    assert (orders.sum, orders.pre_sum, orders.pre_sum_sq, orders.pre_cross) == (1.0, 2.0 + 1.0, 4.0 + 1.0, 2.0 * 1.0)


def test_no_pre_period_when_cuped_is_off(db):
    exp = make_experiment(metrics=("revenue",), cuped=False, variants=("control", "b"))
    expose(exp, "u1", "control", T0)
    store(event("u1", "purchase", T0 - HOUR, 5.0))
    stats = queries.metric_statistics(exp)["revenue"]["control"]
    assert raw(stats) == VariantStats(n=1, sum=0.0, sum_sq=0.0)


def test_ratio_with_count_numerator_and_sum_denominator(db):
    Metric.objects.create(key="items-per-dollar", name="x", event="item", kind="ratio",
                          numerator_aggregation="count", denominator_event="pay",
                          denominator_aggregation="sum")
    exp = services.create_experiment({
        "key": "r", "name": "r", "cuped": False,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "items-per-dollar", "role": "primary"}], "targeting": [],
    })
    expose(exp, "u1", "b", T0)
    expose(exp, "u2", "b", T0)
    store(event("u1", "item", T0), event("u1", "item", T0 + HOUR), event("u1", "pay", T0, 4.0),
          event("u2", "pay", T0, 2.5), event("u2", "pay", T0, None))
    vs = queries.metric_statistics(exp)["items-per-dollar"]["b"]
    assert vs == VariantStats(n=2, sum=2.0, sum_sq=4.0, den_sum=6.5, den_sum_sq=16.0 + 6.25, cross_sum=8.0)


def test_experiment_without_exposures_or_metrics(db):
    exp = make_experiment(metrics=("conv", "rpo"), variants=("control", "b"))
    stats = queries.metric_statistics(exp)
    assert stats["conv"]["b"] == VariantStats(n=0, sum=0.0, sum_sq=0.0, pre_sum=0.0, pre_sum_sq=0.0, pre_cross=0.0)
    assert stats["rpo"]["control"].den_sum == 0.0
    assert queries.segment_statistics(exp, "country") == {}
    assert queries.exposure_counts(exp) == {"control": 0, "b": 0}
    assert queries.daily_exposures(exp) == []
    bare = make_experiment("bare", metrics=(), variants=("control", "b"))
    expose(bare, "u1", "b", T0)
    assert queries.metric_statistics(bare) == {}


def test_exposure_counts_and_daily_exposures(db):
    exp = make_experiment(metrics=("conv",), variants=("control", "b"))
    expose(exp, "u1", "control", datetime(2026, 11, 20, 0, 0, tzinfo=UTC))
    expose(exp, "u2", "control", datetime(2026, 11, 20, 23, 59, 59, 999999, tzinfo=UTC))
    expose(exp, "u3", "b", datetime(2026, 11, 22, 10, tzinfo=UTC))
    assert queries.exposure_counts(exp) == {"control": 2, "b": 1}
    assert queries.exposure_counts(exp, until=datetime(2026, 11, 21, tzinfo=UTC)) == {"control": 2, "b": 0}
    assert queries.daily_exposures(exp) == [
        {"date": "2026-11-20", "variant": "control", "units": 2},
        {"date": "2026-11-20", "variant": "b", "units": 0},
        {"date": "2026-11-21", "variant": "control", "units": 0},
        {"date": "2026-11-21", "variant": "b", "units": 0},
        {"date": "2026-11-22", "variant": "control", "units": 0},
        {"date": "2026-11-22", "variant": "b", "units": 1},
    ]


def test_other_experiments_exposures_are_not_counted(db):
    exp = make_experiment("one", metrics=("conv",), variants=("control", "b"))
    other = make_experiment("two", metrics=("conv",), variants=("control", "b"))
    expose(exp, "u1", "b", T0)
    expose(other, "u2", "b", T0)
    store(event("u1", "purchase", T0 + HOUR), event("u2", "purchase", T0 + HOUR))
    assert queries.metric_statistics(exp)["conv"]["b"].n == 1
    assert queries.metric_statistics(other)["conv"]["b"].sum == 1.0


def test_attribute_values_are_parameters_and_names_are_validated(db):
    exp = make_experiment(metrics=("conv",), variants=("control", "b"))
    expose(exp, "u1", "b", T0, country="C'N\"); DROP TABLE x; --", **{"a.b-c": "dotted"})
    expose(exp, "u2", "b", T0, country="日本")
    segments = queries.segment_statistics(exp, "country")
    assert set(segments) == {"C'N\"); DROP TABLE x; --", "日本"}
    assert set(queries.segment_statistics(exp, "a.b-c")) == {"dotted", queries.NONE_SEGMENT}
    for bad in ["country'", 'x"', "1abc", "", "a" * 65, "a b", "$.x", None]:
        with pytest.raises(ValueError):
            queries.segment_statistics(exp, bad)
    with pytest.raises(ValueError):
        queries.segment_statistics(exp, "country", max_segments=0)


def test_erased_unit_is_no_longer_counted(db):
    exp = make_experiment(metrics=("conv", "revenue"), variants=("control", "b"))
    expose(exp, "keep", "b", T0)
    expose(exp, "erase-me", "b", T0)
    store(event("keep", "purchase", T0 + HOUR, 10.0), event("erase-me", "purchase", T0 + HOUR, 90.0),
          event("erase-me", "purchase", T0 - HOUR, 5.0))
    before = queries.metric_statistics(exp)
    assert before["revenue"]["b"].n == 2 and before["revenue"]["b"].sum == 100.0
    assert privacy.erase_unit("erase-me") == {"events": 2, "exposures": 1, "overrides": 0}
    after = queries.metric_statistics(exp)
    assert raw(after["revenue"]["b"]) == VariantStats(n=1, sum=10.0, sum_sq=100.0, pre_sum=0.0, pre_sum_sq=0.0, pre_cross=0.0)
    assert after["conv"]["b"].sum == 1.0


def test_a_naive_until_is_taken_as_utc(db):
    exp = make_experiment(metrics=("conv",), variants=("control", "b"))
    expose(exp, "u1", "b", T0)
    naive = (T0 + HOUR).replace(tzinfo=None)
    assert queries.exposure_counts(exp, until=naive) == {"control": 0, "b": 1}
    with pytest.raises(TypeError):
        queries.exposure_counts(exp, until="2026-11-20")


def test_metrics_can_be_limited(random_experiment):
    everything = queries.metric_statistics(random_experiment)
    some = queries.metric_statistics(random_experiment, metrics=["revenue", "rpo", "unknown"])
    assert set(some) == {"revenue", "rpo"}
    # Same figures; the database may add the floats in another order between two queries.
    assert_tables_equal(some, {k: everything[k] for k in ("revenue", "rpo")})
    segments = queries.segment_statistics(random_experiment, "country", metrics={"conv"})
    assert all(set(per_metric) == {"conv"} for per_metric in segments.values())
    with pytest.raises(TypeError):
        queries.metric_statistics(random_experiment, metrics="conv")
