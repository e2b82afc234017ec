"""Charts of the per-day series (``payload["daily_series"]``, see ``analysis.daily``).

Per metric: the day's value per variant, and the cumulative relative lift of each treatment with
its interval band. The day the data stops in (before its end) is drawn as partial (hatched,
labelled, hollow markers), never as a drop. Each chart has its numbers as a table (the text
alternative), built by ``charts.data_table``.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from . import charts


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _percent(metric: dict[str, Any]) -> bool:
    return metric.get("kind") == "conversion"


def value_chart(series: dict[str, Any], metric: dict[str, Any], *, width: int = 560) -> str:
    """The day's value of ``metric`` per variant."""
    lines = []
    for i, v in enumerate(metric.get("variants") or []):
        s = charts.Series(str(v.get("variant")), colour=charts.colour(i))
        for p in v.get("points") or []:
            d = _day(p.get("date"))
            if d is not None and p.get("value") is not None:
                s.points.append((d, float(p["value"])))
        lines.append(s)
    name = metric.get("name") or metric.get("metric")
    partial = _day(series.get("partial_day")) if series.get("partial_day") else None
    return charts.line_chart(lines, title=f"{name}: per day", percent=_percent(metric), width=width,
                             partial_from=partial, partial_label="partial day (so far)")


def lift_chart(series: dict[str, Any], metric: dict[str, Any], *, width: int = 560) -> str:
    """The cumulative relative lift of each treatment as of each day, with its interval band."""
    lines = []
    for i, v in enumerate(metric.get("variants") or []):
        if v.get("is_control"):
            continue
        s = charts.Series(str(v.get("variant")), colour=charts.colour(i))
        for p in v.get("points") or []:
            d = _day(p.get("date"))
            if d is None or p.get("lift") is None:
                continue
            s.points.append((d, float(p["lift"])))
            ci = p.get("ci_relative") or [None, None]
            if ci[0] is not None and ci[1] is not None:
                s.band.append((d, float(ci[0]), float(ci[1])))
        lines.append(s)
    name = metric.get("name") or metric.get("metric")
    partial = _day(series.get("partial_day")) if series.get("partial_day") else None
    return charts.line_chart(lines, title=f"{name}: cumulative relative lift by day", percent=True, zero_line=True,
                             width=width, partial_from=partial, partial_label="partial day (so far)")


def _num(x: Any, percent: bool) -> str:
    return charts.fmt_value(x, percent) if isinstance(x, int | float) and x == x else "n/a"


def _rows(series: dict[str, Any], metric: dict[str, Any], cells) -> list[list[Any]]:
    partial = series.get("partial_day")
    rows = []
    for v in metric.get("variants") or []:
        for p in v.get("points") or []:
            day = f"{p.get('date')} (partial)" if p.get("date") == partial else str(p.get("date"))
            row = cells(v, p)
            if row is not None:
                rows.append([day, v.get("variant"), *row])
    rows.sort(key=lambda r: str(r[0]))
    return rows


def value_table(series: dict[str, Any], metric: dict[str, Any]) -> str:
    """Text alternative of ``value_chart``: one row per day and variant."""
    percent = _percent(metric)
    rows = _rows(series, metric, lambda v, p: [p.get("units"), _num(p.get("value"), percent),
                                               _num(p.get("mean"), percent)])
    name = metric.get("name") or metric.get("metric")
    return charts.data_table(f"{name} per day", ["Day", "Variant", "Units so far", "Day's value", "Cumulative"], rows)


def lift_table(series: dict[str, Any], metric: dict[str, Any]) -> str:
    """Text alternative of ``lift_chart``: one row per day and treatment."""
    def cells(v, p):
        if v.get("is_control"):
            return None
        ci = p.get("ci_relative") or [None, None]
        return [_num(p.get("lift"), True), _num(ci[0], True), _num(ci[1], True), p.get("units")]

    name = metric.get("name") or metric.get("metric")
    return charts.data_table(f"{name}: cumulative relative lift by day",
                             ["Day", "Variant", "Lift", "Low", "High", "Units so far"], _rows(series, metric, cells))


def present(payload: dict[str, Any], *, limit: int | None = None, width: int = 560) -> list[dict[str, Any]]:
    """Per metric (the first ``limit``): its two charts and their table, as strings (escaped in
    ``charts``)."""
    series = payload.get("daily_series") or {}
    out = []
    for metric in (series.get("metrics") or [])[:limit]:
        out.append({
            "key": metric.get("metric"),
            "name": metric.get("name") or metric.get("metric"),
            "value_svg": value_chart(series, metric, width=width),
            "lift_svg": lift_chart(series, metric, width=width),
            "value_table": value_table(series, metric),
            "lift_table": lift_table(series, metric),
        })
    return out
