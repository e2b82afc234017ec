"""The SVG charts: pure functions, well-formed output, escaped text, honest empty states."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

import pytest

from analysis import charts
from analysis.selectors import lift_series

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML or this raises
    assert root.tag == f"{SVG}svg" and root.get("role") == "img" and root.get("aria-label")
    return root


def metric(variants):
    return {"metric": "purchase", "name": "Purchase", "variants": variants}


def treated(key, rel, lo, hi, *, significant=False, verdict="inconclusive"):
    return {"variant": key, "is_control": False, "significant": significant, "verdict": verdict,
            "lift": {"absolute": 0.01, "relative": rel, "ci_absolute": [0, 0.02], "ci_relative": [lo, hi]}}


CONTROL = {"variant": "control", "is_control": True, "units": 10}


@pytest.mark.parametrize("lo, hi, expected", [
    (0, 1, [0, 0.25, 0.5, 0.75, 1.0]),
    (-0.03, 0.12, [-0.05, 0, 0.05, 0.1, 0.15]),
    (5, 5, None),
])
def test_nice_ticks(lo, hi, expected):
    ticks = charts.nice_ticks(lo, hi)
    if expected is not None:
        assert ticks == pytest.approx(expected)
    assert ticks[0] <= min(lo, hi) and ticks[-1] >= max(lo, hi)
    assert len(ticks) <= 8


def test_interval_plot_draws_one_interval_per_treatment_with_tones():
    svg = charts.metric_interval_chart(metric([
        CONTROL,
        treated("green", 0.1, 0.02, 0.18, significant=True, verdict="better"),
        treated("red", -0.1, -0.2, -0.01, significant=True, verdict="worse"),
        treated("grey", 0.01, -0.05, 0.07),
    ]))
    root = parse(svg)
    groups = root.findall(f"{SVG}g")
    assert len(groups) == 3
    colours = [g.find(f"{SVG}circle").get("fill") for g in groups]
    assert colours == [charts.GOOD, charts.BAD, charts.NEUTRAL]
    assert root.find(f".//{SVG}line[@class='zero']") is not None
    # The zero line sits between the red and the green interval.
    zero_x = float(root.find(f".//{SVG}line[@class='zero']").get("x1"))
    xs = [float(g.find(f"{SVG}circle").get("cx")) for g in groups]
    assert xs[1] < zero_x < xs[0]


def test_labels_are_escaped():
    nasty = '<script>alert("x")</script>&'
    svg = charts.metric_interval_chart({"metric": "m", "name": nasty, "variants": [
        CONTROL, treated(nasty, 0.1, 0.0, 0.2)]})
    assert "<script>" not in svg
    root = parse(svg)
    assert nasty in root.get("aria-label")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert nasty in texts


def test_empty_states_say_why():
    svg = charts.metric_interval_chart(metric([CONTROL, {"variant": "green", "is_control": False, "lift": None}]))
    assert "not enough data" in svg
    parse(svg)
    assert "no data yet" in charts.daily_exposures_chart([])
    assert "no data yet" in charts.cumulative_lift_chart([], "purchase")


def _snap(at, variants, *, early=False):
    return {"computed_at": at, "series": lift_series({"metrics": [metric(variants)], "plan": {"early_look": early}})}


def _always_valid(v, lo, hi):
    return {**v, "sequential": {"ci_relative": [lo, hi]}}


def test_cumulative_lift_follows_the_history():
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    history = [
        _snap(t0 + timedelta(days=i), [CONTROL, _always_valid(treated("green", r, r - 0.2, r + 0.2), r - 0.5, r + 0.5)])
        for i, r in enumerate([0.3, 0.2, 0.12, 0.1])
    ]
    root = parse(charts.cumulative_lift_chart(history, "purchase"))
    line = root.find(f".//{SVG}polyline[@class='series']")
    points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    assert len(points) == 4
    assert [x for x, _ in points] == sorted(x for x, _ in points)
    ys = [y for _, y in points]
    assert ys == sorted(ys)  # falling lift = rising SVG y
    band = root.find(f".//{SVG}polygon[@class='band']")
    assert band is not None and "always-valid" in charts.cumulative_lift_chart(history, "purchase")
    assert "Nov 1" in charts.cumulative_lift_chart(history, "purchase")


def test_lift_chart_never_draws_fixed_horizon_bands_and_marks_early_looks():
    """Issue 11: ordinary 95 % bands at every recomputation invite peeking."""
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    fixed_only = [_snap(t0 + timedelta(days=i), [CONTROL, treated("green", 0.1, 0.05, 0.15)]) for i in range(3)]
    root = parse(charts.cumulative_lift_chart(fixed_only, "purchase"))
    assert root.find(f".//{SVG}polygon[@class='band']") is None
    early = [_snap(t0 + timedelta(days=i), [CONTROL, _always_valid(treated("green", 0.1, 0.05, 0.15), -0.3, 0.5)],
                   early=i < 2) for i in range(3)]
    svg = charts.cumulative_lift_chart(early, "purchase")
    root = parse(svg)
    dashed = root.find(f".//{SVG}polyline[@class='early-look']")
    assert dashed is not None and len(dashed.get("points").split()) == 3  # 2 early looks + the join
    assert root.find(f".//{SVG}polyline[@class='series']") is None and "early looks" in svg


def test_daily_exposures_one_line_per_variant():
    rows = [{"date": (date(2026, 11, 1) + timedelta(days=d)).isoformat(), "variant": v, "units": 100 + d}
            for d in range(5) for v in ("control", "green")]
    root = parse(charts.daily_exposures_chart(rows, variants=["control", "green"]))
    assert len(root.findall(f".//{SVG}polyline[@class='series']")) == 2
    legend = [t.text for t in root.iter(f"{SVG}text")]
    assert "control" in legend and "green" in legend


def test_a_single_point_is_drawn_without_dividing_by_zero():
    history = [_snap(datetime(2026, 11, 1, tzinfo=UTC), [CONTROL, treated("green", 0.1, 0.0, 0.2)])]
    root = parse(charts.cumulative_lift_chart(history, "purchase"))
    assert len(root.findall(f".//{SVG}circle")) == 1


def test_non_finite_values_are_skipped():
    svg = charts.metric_interval_chart(metric([CONTROL, treated("green", float("nan"), 0.0, float("inf"))]))
    assert "nan" not in svg.lower() and "inf" not in svg.lower().replace("info", "")
    parse(svg)


# --- issue 17: partial day, clip markers, distinct labels, text alternatives ----------------------

def test_partial_last_day_is_marked_not_joined_to_the_line():
    rows = [{"date": (date(2026, 11, 1) + timedelta(days=d)).isoformat(), "variant": "control",
             "units": 5 if d == 4 else 100} for d in range(5)]
    plain = parse(charts.daily_exposures_chart(rows, variants=["control"]))
    assert len(plain.find(f".//{SVG}polyline[@class='series']").get("points").split()) == 5  # the "drop"
    assert plain.find(f".//{SVG}g[@class='partial']") is None
    svg = charts.daily_exposures_chart(rows, variants=["control"], partial_day=date(2026, 11, 5),
                                       partial_label="partial day (data until 14:00 UTC)")
    root = parse(svg)
    line = root.find(f".//{SVG}polyline[@class='series']")
    assert len(line.get("points").split()) == 4  # the partial day is not joined to the line
    hatch = root.find(f".//{SVG}g[@class='partial']")
    assert hatch is not None and "partial day (data until 14:00 UTC)" in "".join(hatch.itertext())
    point = root.find(f".//{SVG}circle[@class='partial-point']")
    assert point is not None and point.get("fill") == "#fff" and "so far" in "".join(point.itertext())
    # The hatched column starts between the last full day and the partial one.
    xs = [float(p.split(",")[0]) for p in line.get("points").split()]
    assert xs[-1] < float(hatch.find(f"{SVG}rect").get("x")) < float(point.get("cx"))


def test_bands_cut_off_by_the_axis_get_a_clip_marker():
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    history = [_snap(t0 + timedelta(days=i), [CONTROL, _always_valid(treated("green", 0.05, 0.0, 0.1), lo, hi)])
               for i, (lo, hi) in enumerate([(-3.0, 4.0), (0.01, 0.09), (0.02, 0.08)])]
    svg = charts.cumulative_lift_chart(history, "purchase")
    root = parse(svg)
    clips = root.findall(f".//{SVG}path[@class='clip']")
    assert len(clips) == 2  # the first band's both ends
    assert any("400%" in "".join(c.itertext()) for c in clips)
    assert root.find(f".//{SVG}text[@class='clip-note']") is not None
    narrow = [_snap(t0 + timedelta(days=i), [CONTROL, _always_valid(treated("green", 0.05, 0.0, 0.1), 0.01, 0.09)])
              for i in range(2)]
    assert parse(charts.cumulative_lift_chart(narrow, "purchase")).find(f".//{SVG}path[@class='clip']") is None


def test_recomputations_in_the_same_minute_get_distinct_labels():
    from analysis.pages import distinct_labels

    t = datetime(2026, 12, 2, 1, 4, 10, tzinfo=UTC)
    times = [t, t + timedelta(seconds=30), t + timedelta(seconds=30), t + timedelta(hours=1)]
    labels = distinct_labels(times)
    assert len(set(labels)) == 4
    assert labels == ["Dec 2 01:04:10", "Dec 2 01:04:40 (#1)", "Dec 2 01:04:40 (#2)", "Dec 2 02:04"]


def test_every_chart_has_a_table_of_its_numbers():
    interval = charts.interval_table(metric([CONTROL, treated("g<b>", 0.1, 0.02, 0.18)]))
    assert "<table" in interval and "g&lt;b&gt;" in interval and "10%" in interval and "18%" in interval
    assert interval.startswith("<details") and "<th scope=\"col\">Low</th>" in interval
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    history = [_snap(t0 + timedelta(days=i), [CONTROL, _always_valid(treated("green", 0.1, 0.0, 0.2), -0.1, 0.3)])
               for i in range(2)]
    table = charts.lift_history_table(history, "purchase", ["A", "B"])
    assert table.count("<tr>") == 1 + 2 and ">A<" in table and "30%" in table
    rows = [{"date": "2026-11-01", "variant": "control", "units": 7}, {"date": "2026-11-02", "variant": "green",
                                                                        "units": 3}]
    daily = charts.daily_exposures_table(rows, variants=["control", "green"], partial_day=date(2026, 11, 2))
    assert "2026-11-02 (partial)" in daily and "<td>7</td>" in daily
    assert charts.daily_exposures_table([]) == ""
