"""Server-rendered SVG charts: pure functions from numbers to an SVG string.

No JavaScript and no network: the report pages work offline and print well. Every piece of text
that reaches the SVG (variant keys, metric names) is escaped here, so templates may mark the
result safe.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from html import escape

PALETTE = ["#64748b", "#2563eb", "#16a34a", "#d97706", "#9333ea", "#db2777", "#0891b2", "#65a30d"]
GOOD, BAD, NEUTRAL = "#15803d", "#b91c1c", "#475569"
FONT = "font-family=\"system-ui,-apple-system,'Segoe UI',Roboto,sans-serif\""


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _f(x: float) -> str:
    """Compact coordinates."""
    return f"{x:.1f}".rstrip("0").rstrip(".") if math.isfinite(x) else "0"


def _finite(*values: float | None) -> bool:
    return all(v is not None and isinstance(v, int | float) and math.isfinite(v) for v in values)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if not _finite(lo, hi):
        return [0.0]
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def fmt_value(x: float, percent: bool) -> str:
    if percent:
        digits = 0 if abs(x) >= 0.1 or x == 0 else 1
        if 0 < abs(x) < 0.01:
            digits = 2 if abs(x) >= 0.001 else 3
        return f"{x * 100:.{digits}f}%"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _empty(message: str, width: int, height: int = 80) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-empty" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(message)}"><title>{_e(message)}</title>'
        f'<text x="{width / 2:g}" y="{height / 2 + 4:g}" text-anchor="middle" fill="#64748b" font-size="13" {FONT}>'
        f"{_e(message)}</text></svg>"
    )


# --- interval plot ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    label: str
    estimate: float | None
    low: float | None
    high: float | None
    tone: str = "neutral"  # "good", "bad" or "neutral"


def interval_plot(rows: Sequence[Interval], *, title: str, percent: bool = True, width: int = 560) -> str:
    """A forest plot: one horizontal interval per row around a zero line."""
    usable = [r for r in rows if _finite(r.estimate, r.low, r.high)]
    if not usable:
        return _empty(f"{title}: not enough data for an interval yet", width)
    left, right, top, row_h = 120, 24, 34, 34
    height = top + row_h * len(rows) + 34
    lo = min(0.0, *(r.low for r in usable))
    hi = max(0.0, *(r.high for r in usable))
    ticks = nice_ticks(lo, hi)
    lo, hi = min(ticks[0], lo), max(ticks[-1], hi)
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return left + (v - lo) / span * (width - left - right)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-interval" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>',
        f'<text x="{left}" y="18" font-size="12" fill="#334155" {FONT}>{_e(title)}</text>',
    ]
    axis_y = top + row_h * len(rows) + 4
    for t in ticks:
        parts.append(
            f'<line x1="{_f(x(t))}" y1="{top - 6}" x2="{_f(x(t))}" y2="{axis_y}" stroke="#e2e8f0"/>'
            f'<text x="{_f(x(t))}" y="{axis_y + 16}" font-size="11" fill="#64748b" text-anchor="middle" {FONT}>'
            f"{_e(fmt_value(t, percent))}</text>"
        )
    parts.append(
        f'<line class="zero" x1="{_f(x(0))}" y1="{top - 6}" x2="{_f(x(0))}" y2="{axis_y}" stroke="#0f172a" '
        'stroke-dasharray="3 3"/>'
    )
    for i, r in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        parts.append(
            f'<text x="{left - 10}" y="{_f(cy + 4)}" font-size="12" fill="#0f172a" text-anchor="end" {FONT}>'
            f"{_e(r.label)}</text>"
        )
        if not _finite(r.estimate, r.low, r.high):
            parts.append(
                f'<text x="{left + 6}" y="{_f(cy + 4)}" font-size="11" fill="#94a3b8" {FONT}>not enough data</text>'
            )
            continue
        c = {"good": GOOD, "bad": BAD}.get(r.tone, NEUTRAL)
        label = f"{r.label}: {fmt_value(r.estimate, percent)} ({fmt_value(r.low, percent)} to {fmt_value(r.high, percent)})"
        parts.append(
            f'<g class="interval"><title>{_e(label)}</title>'
            f'<line x1="{_f(x(r.low))}" y1="{_f(cy)}" x2="{_f(x(r.high))}" y2="{_f(cy)}" stroke="{c}" stroke-width="3" stroke-linecap="round"/>'
            f'<line x1="{_f(x(r.low))}" y1="{_f(cy - 6)}" x2="{_f(x(r.low))}" y2="{_f(cy + 6)}" stroke="{c}" stroke-width="2"/>'
            f'<line x1="{_f(x(r.high))}" y1="{_f(cy - 6)}" x2="{_f(x(r.high))}" y2="{_f(cy + 6)}" stroke="{c}" stroke-width="2"/>'
            f'<circle cx="{_f(x(r.estimate))}" cy="{_f(cy)}" r="5" fill="{c}"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def metric_interval_chart(metric: dict, *, width: int = 560) -> str:
    """The relative lift interval of every treatment of one metric of a results payload."""
    rows = []
    for v in metric.get("variants") or []:
        if v.get("is_control"):
            continue
        lift = v.get("lift") or {}
        ci = lift.get("ci_relative") or [None, None]
        tone = "neutral"
        if v.get("significant"):
            tone = "good" if v.get("verdict") == "better" else "bad"
        rows.append(Interval(str(v.get("variant")), lift.get("relative"), ci[0], ci[1], tone))
    name = metric.get("name") or metric.get("metric") or "metric"
    return interval_plot(rows, title=f"Relative lift of {name} vs control", width=width)


# --- line charts over time ---------------------------------------------------------------------

@dataclass
class Series:
    label: str
    points: list[tuple[datetime | date, float]] = field(default_factory=list)
    band: list[tuple[datetime | date, float, float]] = field(default_factory=list)
    colour: str = ""
    early: set[float] = field(default_factory=set)  # timestamps of early looks (drawn dashed)


def _ts(value: datetime | date) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime(value.year, value.month, value.day).timestamp()


def _date_label(value: datetime | date) -> str:
    return f"{value:%b} {value.day}"


def line_chart(series: Sequence[Series], *, title: str, percent: bool = False, zero_line: bool = False,
               width: int = 560, height: int = 240, partial_from: datetime | date | None = None,
               partial_label: str = "partial day") -> str:
    """Lines over time (optionally with a shaded interval band), a legend and date ticks.

    Points at or after ``partial_from`` (an incomplete period, e.g. today so far) are not joined
    to the line, which would read as a drop: they get a hatched column, a label and hollow
    markers. Bands cut off by the axis get a triangle at the cut (class ``clip``).
    """
    drawn = [s for s in series if any(_finite(y) for _, y in s.points)]
    if not drawn:
        return _empty(f"{title}: no data yet", width)
    left, right, top, bottom = 64, 16, 44, 30
    xs = [_ts(t) for s in drawn for t, _ in s.points] + [_ts(t) for s in drawn for t, _, _ in s.band]
    ys = [y for s in drawn for _, y in s.points if _finite(y)]
    # Early intervals can be huge; clamp bands to a window around the lines so they stay readable.
    spread = max(max(ys) - min(ys), abs(max(ys)), abs(min(ys)), 1e-9)
    floor, ceiling = min(ys) - spread, max(ys) + spread

    def clamp(v: float) -> float:
        return min(ceiling, max(floor, v))

    clipped = [  # (series label, time, edge value, true value) of every band end cut off
        (s.label, t, edge, v)
        for s in drawn for t, lo, hi in s.band if _finite(lo, hi)
        for v, edge in ((lo, floor), (hi, ceiling)) if (v < floor if edge == floor else v > ceiling)
    ]

    series = [
        Series(s.label, s.points, [(t, clamp(lo), clamp(hi)) for t, lo, hi in s.band if _finite(lo, hi)], s.colour,
               s.early)
        for s in drawn
    ]
    drawn = series
    ys += [v for s in drawn for _, lo, hi in s.band for v in (lo, hi)]
    if zero_line:
        ys.append(0.0)
    ticks = nice_ticks(min(ys), max(ys))
    y_lo, y_hi = min(ticks[0], min(ys)), max(ticks[-1], max(ys))
    x_lo, x_hi = min(xs), max(xs)
    x_span = (x_hi - x_lo) or 1.0
    y_span = (y_hi - y_lo) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(t: datetime | date) -> float:
        return left + plot_w / 2 if x_hi == x_lo else left + (_ts(t) - x_lo) / x_span * plot_w

    def py(v: float) -> float:
        return top + plot_h - (v - y_lo) / y_span * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-line" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>',
        f'<text x="{left}" y="16" font-size="12" fill="#334155" {FONT}>{_e(title)}</text>',
    ]
    lx = left
    for i, s in enumerate(drawn):
        c = s.colour or colour(i)
        parts.append(
            f'<rect x="{lx}" y="24" width="10" height="10" rx="2" fill="{c}"/>'
            f'<text x="{lx + 14}" y="33" font-size="11" fill="#334155" {FONT}>{_e(s.label)}</text>'
        )
        lx += 24 + 7 * len(s.label)
    for t in ticks:
        parts.append(
            f'<line x1="{left}" y1="{_f(py(t))}" x2="{width - right}" y2="{_f(py(t))}" stroke="#e2e8f0"/>'
            f'<text x="{left - 6}" y="{_f(py(t) + 4)}" font-size="11" fill="#64748b" text-anchor="end" {FONT}>'
            f"{_e(fmt_value(t, percent))}</text>"
        )
    if zero_line:
        parts.append(
            f'<line class="zero" x1="{left}" y1="{_f(py(0))}" x2="{width - right}" y2="{_f(py(0))}" '
            'stroke="#0f172a" stroke-dasharray="3 3"/>'
        )
    times = sorted({t for s in drawn for t, _ in s.points}, key=_ts)
    if times:
        n_labels = min(6, len(times))
        picks = {times[round(i * (len(times) - 1) / max(1, n_labels - 1))] for i in range(n_labels)}
        ordered: list = []
        for t in sorted(picks, key=_ts):  # drop labels that would overlap (keep the last one)
            if ordered and px(t) - px(ordered[-1]) < 48:
                if t == times[-1]:
                    ordered[-1] = t
                continue
            ordered.append(t)
        for j, t in enumerate(ordered):
            anchor = "middle"
            if len(ordered) > 1 and j == 0:
                anchor = "start"
            elif len(ordered) > 1 and j == len(ordered) - 1:
                anchor = "end"
            parts.append(
                f'<text x="{_f(px(t))}" y="{height - 10}" font-size="11" fill="#64748b" text-anchor="{anchor}" {FONT}>'
                f"{_e(_date_label(t))}</text>"
            )
    cut = _ts(partial_from) if partial_from is not None else None
    if cut is not None and any(_ts(t) >= cut for t in times):
        before = [t for t in times if _ts(t) < cut]
        x0 = (px(before[-1]) + px(next(t for t in times if _ts(t) >= cut))) / 2 if before else left
        parts.append(
            f'<defs><pattern id="partial-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
            f'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#94a3b8" '
            f'stroke-width="2"/></pattern></defs>'
            f'<g class="partial"><title>{_e(partial_label)}: incomplete, not a drop</title>'
            f'<rect x="{_f(x0)}" y="{top}" width="{_f(width - right - x0)}" height="{plot_h}" '
            f'fill="url(#partial-hatch)" fill-opacity="0.35"/>'
            f'<text x="{width - right - 2}" y="{top + 12}" font-size="10" fill="#475569" text-anchor="end" '
            f'{FONT}>{_e(partial_label)}</text></g>'
        )
    for i, s in enumerate(drawn):
        c = s.colour or colour(i)
        band = [(t, lo, hi) for t, lo, hi in s.band if _finite(lo, hi)]
        if len(band) >= 2:
            upper = " ".join(f"{_f(px(t))},{_f(py(hi))}" for t, _, hi in band)
            lower = " ".join(f"{_f(px(t))},{_f(py(lo))}" for t, lo, _ in reversed(band))
            parts.append(f'<polygon class="band" points="{upper} {lower}" fill="{c}" fill-opacity="0.12"/>')
        pts = [(t, y) for t, y in s.points if _finite(y)]
        if cut is not None:
            for t, y in (p for p in pts if _ts(p[0]) >= cut):
                parts.append(
                    f'<circle class="partial-point" cx="{_f(px(t))}" cy="{_f(py(y))}" r="3.5" fill="#fff" '
                    f'stroke="{c}" stroke-width="2"><title>{_e(s.label)}: {_e(fmt_value(y, percent))} so far '
                    f'({_e(_date_label(t))}, {_e(partial_label)})</title></circle>'
                )
            pts = [(t, y) for t, y in pts if _ts(t) < cut]
        early = [(t, y) for t, y in pts if _ts(t) in s.early]
        if early:  # early looks: one dashed line up to the first conclusive point
            rest = pts[len(early):]
            path = " ".join(f"{_f(px(t))},{_f(py(y))}" for t, y in early + rest[:1])
            parts.append(
                f'<polyline class="early-look" points="{path}" fill="none" stroke="{c}" stroke-width="2" '
                f'stroke-dasharray="4 3"><title>{_e(s.label)}: early looks, not conclusive</title></polyline>'
            )
            pts = rest
        if len(pts) >= 2:
            path = " ".join(f"{_f(px(t))},{_f(py(y))}" for t, y in pts)
            parts.append(f'<polyline class="series" points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for t, y in pts[-1:] if len(pts) > 1 else pts:
            parts.append(
                f'<circle cx="{_f(px(t))}" cy="{_f(py(y))}" r="3.5" fill="{c}">'
                f"<title>{_e(s.label)}: {_e(fmt_value(y, percent))} ({_e(_date_label(t))})</title></circle>"
            )
    for label, t, edge, value in clipped:
        up = edge == ceiling
        y0 = py(edge)
        tip, base = (y0 - 6, y0) if up else (y0 + 6, y0)
        parts.append(
            f'<path class="clip" d="M{_f(px(t) - 4)},{_f(base)} L{_f(px(t) + 4)},{_f(base)} L{_f(px(t))},{_f(tip)} Z" '
            f'fill="#0f172a"><title>{_e(label)} ({_e(_date_label(t))}): the interval reaches '
            f'{_e(fmt_value(value, percent))}, beyond the axis</title></path>'
        )
    if clipped:
        parts.append(
            f'<text class="clip-note" x="{width - right}" y="{height - 10}" font-size="10" fill="#475569" '
            f'text-anchor="end" {FONT}>triangles: interval cut off by the axis</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def cumulative_lift_chart(history: Sequence[dict], metric_key: str, *, width: int = 560) -> str:
    """Relative lift of each treatment over the snapshot history, with the always-valid interval.

    ``history`` holds ``{"computed_at", "series"}`` (see ``selectors.lift_series``). Only
    always-valid bands are drawn (they stay valid however often one looks); fixed-horizon bands
    at every recomputation would invite exactly the peeking the decision rules forbid. Points of
    early looks (before the planned size, sequential testing off) are drawn dashed.
    """
    by_variant: dict[str, Series] = {}
    early = False
    name = metric_key
    for snap in history:
        at = snap["computed_at"]
        series = snap.get("series") or {}
        m = (series.get("metrics") or {}).get(metric_key)
        if not m:
            continue
        name = m.get("name") or name
        for key, (rel, lo, hi) in (m.get("variants") or {}).items():
            if not _finite(rel):
                continue
            s = by_variant.setdefault(key, Series(key, colour=colour(len(by_variant) + 1)))
            s.points.append((at, rel))
            if series.get("early_look"):
                s.early.add(_ts(at))
                early = True
            if _finite(lo, hi):
                s.band.append((at, lo, hi))
    title = f"Relative lift of {name} over time (always-valid intervals)"
    svg = line_chart(list(by_variant.values()), title=title, percent=True, zero_line=True, width=width)
    if early and svg.endswith("</svg>"):
        note = (f'<text class="early-note" x="{width - 16}" y="16" font-size="10" fill="#b45309" '
                f'text-anchor="end" {FONT}>dashed: early looks, not conclusive</text>')
        svg = svg[: -len("</svg>")] + note + "</svg>"
    return svg


def daily_exposures_chart(rows: Sequence[dict], *, variants: Sequence[str] = (), width: int = 560,
                          partial_day: date | None = None, partial_label: str = "partial day") -> str:
    """New units a day per variant from ``[{"date", "variant", "units"}]``; ``partial_day`` (the
    day the data stops in, when it stops before midnight) is marked as partial, not a drop."""
    order = list(dict.fromkeys([*variants, *(str(r["variant"]) for r in rows)]))
    series = {k: Series(k, colour=colour(i)) for i, k in enumerate(order)}
    for r in sorted(rows, key=lambda r: str(r["date"])):
        d = r["date"]
        if isinstance(d, str):
            try:
                d = date.fromisoformat(d[:10])
            except ValueError:
                continue
        series[str(r["variant"])].points.append((d, float(r["units"])))
    return line_chart(list(series.values()), title="New units per day", width=width,
                      partial_from=partial_day, partial_label=partial_label)


# --- text alternatives ----------------------------------------------------------------------------

def data_table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The numbers of a chart as an HTML table in a closed ``<details>`` (its text alternative:
    screen readers and people who want the figures read them here)."""
    if not rows:
        return ""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return (f'<details class="chart-data"><summary>Numbers: {_e(caption)}</summary>'
            f'<table class="chart-table"><caption>{_e(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></details>")


def _num(x: object, percent: bool) -> str:
    return fmt_value(x, percent) if _finite(x) else "n/a"  # type: ignore[arg-type]


def interval_table(metric: dict) -> str:
    """Text alternative of ``metric_interval_chart``."""
    name = metric.get("name") or metric.get("metric") or "metric"
    rows = []
    for v in metric.get("variants") or []:
        if v.get("is_control"):
            continue
        lift = v.get("lift") or {}
        ci = lift.get("ci_relative") or [None, None]
        rows.append([v.get("variant"), _num(lift.get("relative"), True), _num(ci[0], True), _num(ci[1], True)])
    return data_table(f"Relative lift of {name} vs control", ["Variant", "Lift", "Low", "High"], rows)


def lift_history_table(history: Sequence[dict], metric_key: str, labels: Sequence[str] | None = None) -> str:
    """Text alternative of ``cumulative_lift_chart`` (one row per snapshot and variant)."""
    rows = []
    name = metric_key
    for i, snap in enumerate(history):
        m = ((snap.get("series") or {}).get("metrics") or {}).get(metric_key)
        if not m:
            continue
        name = m.get("name") or name
        when = labels[i] if labels else f"{snap['computed_at']:%b %d %H:%M:%S}"
        for key, (rel, lo, hi) in (m.get("variants") or {}).items():
            rows.append([when, key, _num(rel, True), _num(lo, True), _num(hi, True)])
    return data_table(f"Relative lift of {name} over time", ["Snapshot", "Variant", "Lift", "Low", "High"], rows)


def daily_exposures_table(rows: Sequence[dict], *, variants: Sequence[str] = (),
                          partial_day: date | None = None) -> str:
    """Text alternative of ``daily_exposures_chart`` (one row per day, one column per variant)."""
    order = list(dict.fromkeys([*variants, *(str(r["variant"]) for r in rows)]))
    days: dict[str, dict[str, object]] = {}
    for r in rows:
        days.setdefault(str(r["date"])[:10], {})[str(r["variant"])] = r["units"]
    partial = partial_day.isoformat() if partial_day else None
    body = [[f"{d} (partial)" if d == partial else d, *(days[d].get(k, 0) for k in order)] for d in sorted(days)]
    return data_table("New units per day", ["Day", *order], body)
