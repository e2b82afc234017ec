"""Charts of the per-day series: well-formed SVG, the partial day marked (not a drop), bands cut
off by the axis marked, and a table alternative for every chart; the report page shows them."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.contrib.auth.models import User

from analysis import daily_charts, reports

from .reporting import make_experiment, populate

SVG = "{http://www.w3.org/2000/svg}"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]


def _series(lifts=(0.1, 0.12, 0.11, 0.0), lows=(-0.2, -0.1, 0.0, -0.5), name="Purchase <b>conv</b>"):
    def points(control: bool):
        return [{"date": d, "partial": d == DAYS[-1], "units": 100 * (i + 1), "value": 0.05 + 0.01 * i,
                 "mean": 0.05, "lift": None if control else lifts[i],
                 "ci_relative": None if control else [lows[i], 0.4], "p_value": None if control else 0.3}
                for i, d in enumerate(DAYS)]
    return {"days": DAYS, "partial_day": DAYS[-1], "omitted_days": 0, "metrics": [{
        "metric": "purchase", "name": name, "kind": "conversion", "role": "primary",
        "variants": [{"variant": "control", "is_control": True, "points": points(True)},
                     {"variant": "green", "is_control": False, "points": points(False)}]}]}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("role") == "img" and root.get("aria-label")
    return root


def test_the_partial_day_is_hatched_and_labelled_not_drawn_as_a_drop():
    series = _series()
    metric = series["metrics"][0]
    for svg in (daily_charts.value_chart(series, metric), daily_charts.lift_chart(series, metric)):
        root = parse(svg)
        partial = root.find(f".//{SVG}g[@class='partial']")
        assert partial is not None and "partial day" in "".join(partial.itertext())
        for line in root.findall(f".//{SVG}polyline[@class='series']"):
            assert len(line.get("points").split()) == 3  # the partial day is not joined to the line
        assert root.findall(f".//{SVG}circle[@class='partial-point']")
    no_partial = {**series, "partial_day": None}
    assert parse(daily_charts.value_chart(no_partial, metric)).find(f".//{SVG}g[@class='partial']") is None


def test_bands_cut_off_by_the_axis_get_a_marker_with_a_text_label():
    series = _series(lifts=(0.01, 0.02, 0.015, 0.02), lows=(-9.0, -0.05, -0.02, -0.01))
    root = parse(daily_charts.lift_chart(series, series["metrics"][0]))
    clip = root.findall(f".//{SVG}path[@class='clip']")
    assert clip and "beyond the axis" in "".join(clip[0].itertext()) and "-900%" in "".join(clip[0].itertext())


def test_every_chart_has_its_numbers_as_a_table_and_text_is_escaped():
    series = _series()
    [item] = daily_charts.present({"daily_series": series})
    assert "<b>" not in item["value_svg"] + item["lift_svg"] + item["value_table"] + item["lift_table"]
    values = [[c.text or "" for c in r] for r in ET.fromstring(item["value_table"]).findall(".//tbody/tr")]
    assert len(values) == 2 * len(DAYS)  # a row per day and variant
    assert ["2026-11-01", "control", "100", "5.0%", "5.0%"] in values
    assert values[-1][0] == f"{DAYS[-1]} (partial)"
    lifts = [[c.text or "" for c in r] for r in ET.fromstring(item["lift_table"]).findall(".//tbody/tr")]
    assert len(lifts) == len(DAYS)  # treatments only
    assert lifts[0] == ["2026-11-01", "green", "10%", "-20%", "40%", "100"]
    assert lifts[-1][0] == f"{DAYS[-1]} (partial)" and lifts[-1][2] == "0%"
    assert daily_charts.present({}) == []


@pytest.mark.django_db
def test_report_page_shows_daily_charts_with_tables(client):
    experiment = make_experiment()
    result = populate(experiment, units=600, days=4, lift=0.3)
    reports.compute_report(experiment, include_segments=False)
    client.force_login(User.objects.create_superuser("analyst", "a@example.invalid", "pw-for-tests"))
    html = client.get(f"/reports/{experiment.key}/").content.decode()
    assert 'id="daily"' in html and 'id="daily-purchase"' in html and 'id="daily-revenue"' in html
    assert html.count('<details class="chart-data">') == html.count("<svg")  # a table per chart
    assert "is partial (data so far)" in html
    assert result.end.date().isoformat() in html
