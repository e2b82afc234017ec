"""All aggregation SQL: exposures and events -> per-variant sufficient statistics.

Every query the reports run against the event and exposure tables lives in this module, so that
moving the event table to a warehouse (ClickHouse, BigQuery) means porting one file. Raw rows
never reach Python: the database groups events per unit, turns them into per-unit metric values
and sums those (and their squares and cross products) per variant. The statistics engine needs
nothing more (``analysis.stats.VariantStats``).

Rules (what a report counts):

* A unit counts in the variant of its first exposure (``Exposure`` keeps one row per unit with
  the first exposure's variant and time ``first_seen``).
* Post-exposure window: a unit's events count when ``first_seen <= timestamp`` and, if the metric
  has ``conversion_window_hours = W``, ``timestamp < first_seen + W hours`` (half-open).
* Units without events count with value 0 (conversion: 0), so ``n`` is the number of exposed units.
* Per-unit values: conversion = 1 if the unit did the event at least once, else 0; count = number
  of events; sum = sum of their ``value`` (missing values count 0). The metric's ``cap`` is
  applied to each unit's value before summing (winsorization; it does not apply to conversions).
  Ratio metrics: the numerator (``numerator_aggregation`` of ``event``) is capped per unit, the
  denominator (``denominator_aggregation`` of ``denominator_event``; the numerator's event when
  blank) is not; the per-variant ratio is sum(numerators) / sum(denominators).
* CUPED pre-period (only when ``experiment.cuped``; not for quantile metrics): the same per-unit
  value over ``[first_seen - P, first_seen)``, with P the metric's conversion window, or 14 days
  when it has none; units without pre-period events contribute 0. Ratio metrics get the
  pre-period numerator and denominator, their squares and every cross product with each other
  and with the post-period numerator and denominator (``analysis.stats.cuped_ratio``).
* Quantile metrics are not sums: ``analysis.quantiles`` picks their order statistics.
* ``until`` ("as of" reports): only exposures with ``first_seen < until`` and events with
  ``timestamp < until``.
* ``since`` (date ranges, ``?from=`` of the results API): only exposures with
  ``first_seen >= since``; their post-exposure events are then at or after ``since`` too. The
  CUPED pre-period is a covariate and may reach before ``since`` (it is never treatment data).
* ``phase`` (phases, see ``experiments.phases``): only the exposures recorded in that phase. A
  phase's events then start at its units' first exposures in it (so never before the phase
  began); the caller passes the phase's end as ``until``.
* Robust sums: every event value is clamped to +-``VALUE_LIMIT`` (the ingestion limit) before
  it is summed, so no sum, square or cube can overflow a double even for rows written around
  the API (``clamped_units`` counts the units concerned; the report warns). Count and sum
  metrics also get centred moments: each per-unit value is shifted by a per-metric pilot
  (the average over units with events), the shifted sums of powers 1-3 are summed in SQL and
  turned into ``m2``/``m3`` (sums of squared/cubed deviations from the variant mean) here, so a
  tiny spread around a large mean survives (``sum_sq - sum**2/n`` cancels it away).

Every engine (SQLite, PostgreSQL, ClickHouse, DuckDB in tests) runs the SQL built here; what
they spell differently (time shifts, filtered aggregates, LEAST, types, timestamps, JSON
attributes, day truncation, CTE hints) comes from ``analysis.dialects``. Every value, attribute
names included, is a query parameter (a literal only where an engine demands one: ClickHouse
interval counts, validated integers).
"""
from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from assignment.models import Exposure

from . import dialects
from .models import Event
from .stats import VariantStats

DEFAULT_PRE_PERIOD_HOURS = 14 * 24
NONE_SEGMENT = "(none)"
OTHER_SEGMENT = "(other)"
ATTRIBUTE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
_WORK_MEM_RE = re.compile(r"\d{1,7}\s*(kB|MB|GB)?")
#: Event values beyond this magnitude are clamped before aggregation (the ingestion limit; only
#: rows written around the API can exceed it). Any double up to 1.8e308 is thus safe to sum.
VALUE_LIMIT = 1e15


def _limit_sql() -> str:
    return f"CAST({VALUE_LIMIT!r} AS {_d().float_type})"


# --- public interface ------------------------------------------------------------------------


def metric_statistics(
    experiment, *, until: datetime | None = None, metrics: Collection[str] | None = None,
    phase: int | None = None, since: datetime | None = None,
) -> dict[str, dict[str, VariantStats]]:
    """``{metric_key: {variant_key: VariantStats}}`` for every metric of the experiment (or only
    those whose keys are in ``metrics``).

    Every variant is present (``n = 0`` when it has no units). One aggregation query for all
    metrics, plus one for the unit counts.
    """
    return _statistics(experiment, until=until, segment=None, only=metrics, phase=phase, since=since)[None]


def segment_statistics(
    experiment, attribute: str, *, until: datetime | None = None, max_segments: int = 20,
    metrics: Collection[str] | None = None, min_units: int = 1, phase: int | None = None,
    since: datetime | None = None, expression: tuple[str, list[Any]] | None = None,
) -> dict[str, dict[str, dict[str, VariantStats]]]:
    """``{segment: {metric_key: {variant_key: VariantStats}}}`` split by a unit attribute.

    The segment is ``Exposure.attributes[attribute]`` as recorded at the first exposure, as text
    (booleans ``true``/``false``); missing or null -> ``"(none)"``. The ``max_segments`` biggest
    segments (by units) are kept, the rest is folded into ``"(other)"``. Segments are ordered
    biggest first, ``"(other)"`` last. ``metrics`` limits the metrics computed (e.g. to the
    primary ones: each metric adds aggregate columns to the query). Values with fewer than
    ``min_units`` units are folded into ``"(other)"`` too (a rare value can name a unit).
    ``expression`` (SQL text over the exposure row, and its parameters) replaces the attribute's
    value as the segment (``analysis.segments``: audience membership); ``attribute`` then names it.
    """
    if expression is None and (not isinstance(attribute, str) or not ATTRIBUTE_RE.fullmatch(attribute)):
        raise ValueError("attribute must be 1-64 letters, digits, '_', '.', '-', not starting with a digit")
    if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
        raise ValueError("max_segments must be a positive integer")
    return _statistics(experiment, until=until, segment=(attribute, max_segments, max(1, int(min_units)), expression),
                       only=metrics, phase=phase, since=since)


def exposure_counts(experiment, *, until: datetime | None = None, phase: int | None = None,
                    since: datetime | None = None) -> dict[str, int]:
    """Units per variant (``{variant_key: n}``, every variant present)."""
    variants = _variant_keys(experiment)
    counts = {key: 0 for key in variants.values()}
    x = _Exposures(experiment, _aware(until), phase, _aware(since))
    rows = _fetch(f"SELECT {x.variant}, COUNT(*) FROM {x.table} WHERE {x.where} GROUP BY {x.variant}", x.params)
    for variant_id, n in rows:
        if variant_id in variants:
            counts[variants[variant_id]] = int(n)
    return counts


def daily_exposures(experiment, *, phase: int | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> list[dict[str, Any]]:
    """New units per UTC day and variant by first exposure, every day from the first to the last
    one with exposures and every variant (0 when none): ``[{"date", "variant", "units"}]``."""
    variants = _variant_keys(experiment)
    x = _Exposures(experiment, _aware(until), phase, _aware(since))
    day = _d().day(x.first_seen)
    rows = _fetch(
        f"SELECT {day} AS d, {x.variant}, COUNT(*) FROM {x.table} WHERE {x.where} "
        f"GROUP BY {day}, {x.variant}",
        x.params,
    )
    counts: dict[tuple[str, int], int] = {}
    days: set[str] = set()
    for d, variant_id, n in rows:
        d = d.isoformat() if hasattr(d, "isoformat") else str(d)[:10]
        days.add(d)
        counts[(d, variant_id)] = int(n)
    if not days:
        return []
    first = datetime.fromisoformat(min(days)).date()
    last = datetime.fromisoformat(max(days)).date()
    out = []
    for offset in range((last - first).days + 1):
        d = (first + timedelta(days=offset)).isoformat()
        for variant_id, key in variants.items():
            out.append({"date": d, "variant": key, "units": counts.get((d, variant_id), 0)})
    return out


# --- metric definitions -> aggregate columns --------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    key: str
    kind: str
    event: str
    aggregation: str  # "count" | "sum" of the (numerator) event
    den_event: str | None
    den_aggregation: str | None
    cap: float | None
    window: int | None  # hours
    pre: int | None  # hours of the pre-period, None: no pre-period statistics
    quantile: float | None = None  # quantile metrics: the level q


def _specs(experiment) -> list[_Spec]:
    specs = []
    # An ended phase is analysed with its frozen plan (analysis.reports sets the links).
    links = getattr(experiment, "frozen_metric_links", None)
    if links is None:
        links = experiment.experiment_metrics.select_related("metric").order_by("position", "id")
    for link in links:
        m = link.metric
        kind = m.kind
        aggregation = {"conversion": "count", "count": "count", "sum": "sum"}.get(kind, m.numerator_aggregation)
        ratio = kind == "ratio"
        window = m.conversion_window_hours or None
        pre = None
        if experiment.cuped and kind != "quantile":
            pre = window or DEFAULT_PRE_PERIOD_HOURS
        specs.append(_Spec(
            key=m.key, kind=kind, event=m.event, aggregation=aggregation,
            den_event=(m.denominator_event or m.event) if ratio else None,
            den_aggregation=m.denominator_aggregation if ratio else None,
            cap=m.cap if (m.cap is not None and kind != "conversion") else None,
            window=window, pre=pre,
            quantile=float(m.quantile) if kind == "quantile" and m.quantile is not None else None,
        ))
    return specs


class _Columns:
    """Distinct per-unit aggregates (event, aggregation, phase, hours) -> column names."""

    def __init__(self) -> None:
        self.index: dict[tuple, str] = {}
        self.flags: dict[str, str] = {}  # sum column -> its "a value was clamped" column
        self.sql: list[str] = []
        self.params: list[Any] = []

    def get(self, event: str, aggregation: str, phase: str, hours: int | None, shift_col) -> str:
        key = (event, aggregation, phase, hours)
        if key in self.index:
            return self.index[key]
        name = f"a{len(self.index)}"
        ts = f"e.{_q(_event_col('timestamp'))}"
        if phase == "post":
            cond = f"{ts} >= x.t0" + (f" AND {ts} < x.{shift_col(hours)}" if hours else "")
        else:
            cond = f"{ts} >= x.{shift_col(-hours)} AND {ts} < x.t0"
        value = f"e.{_q(_event_col('value'))}"
        where = f"e.{_q(_event_col('event'))} = %s AND {cond}"
        d = _d()
        if aggregation == "count":
            self.sql.append(f"{d.filtered('COUNT', '*', where)} AS {name}")
            self.params.append(event)
        else:
            # Clamp each value first (NaN/inf stored by hand included: NaN > x is true on
            # PostgreSQL, SQLite stores NaN as NULL), and flag units with such a value.
            lim = _limit_sql()
            clamped = f"CASE WHEN {value} > {lim} THEN {lim} WHEN {value} < -{lim} THEN -{lim} ELSE {value} END"
            self.sql.append(f"{d.filtered('SUM', clamped, where)} AS {name}")
            flag = f"{name}c"
            out_of_range = f"CASE WHEN {value} > {lim} OR {value} < -{lim} THEN 1 ELSE 0 END"
            self.sql.append(f"{d.filtered('MAX', out_of_range, where)} AS {flag}")
            self.params += [event, event]
            self.flags[name] = flag
        self.index[key] = name
        return name


def _value_sql(spec: _Spec, column: str, params: list[Any], *, capped: bool = True) -> str:
    """Per-unit metric value from its aggregate column, as DOUBLE PRECISION (cap applied)."""
    d = _d()
    raw = f"COALESCE({column}, 0)"
    if spec.kind == "conversion":
        return f"CASE WHEN {raw} > 0 THEN {d.cast_float('1')} ELSE {d.cast_float('0')} END"
    value = d.cast_float(raw)
    if capped and spec.cap is not None:
        params.append(float(spec.cap))
        return f"{d.least}({value}, %s)"
    return value


# --- the aggregation query ---------------------------------------------------------------------


class _Exposures:
    """The exposure rows of one experiment (optionally as of ``until``, of one ``phase``) as SQL
    fragments."""

    def __init__(self, experiment, until: datetime | None, phase: int | None = None,
                 since: datetime | None = None):
        meta = Exposure._meta
        self.table = _d().source(_q(meta.db_table))
        col = lambda name: _q(meta.get_field(name).column)  # noqa: E731
        self.unit, self.variant, self.first_seen = col("unit_id"), col("variant"), col("first_seen")
        self.attributes = col("attributes")
        self.where = f"{col('experiment')} = %s"
        self.params: list[Any] = [experiment.pk]
        if until is not None:
            self.where += f" AND {self.first_seen} < %s"
            self.params.append(_adapt(until))
        if since is not None:
            self.where += f" AND {self.first_seen} >= %s"
            self.params.append(_adapt(since))
        if phase is not None:
            self.where += f" AND {col('phase')} = %s"
            self.params.append(int(phase))


def _segment_key_sql(attributes: str, attribute: str) -> tuple[str, list[Any]]:
    """SQL for the segment value (text, '(none)' when missing or null) and its parameters."""
    sql, params = _d().json_text(attributes, attribute)  # attribute matched ATTRIBUTE_RE
    return f"COALESCE({sql}, %s)", [*params, NONE_SEGMENT]


def _statistics(experiment, *, until, segment, only=None, phase=None, since=None):
    until = _aware(until)
    variants = _variant_keys(experiment)
    specs = _specs(experiment)
    if only is not None:
        if isinstance(only, str):
            raise TypeError("metrics must be a collection of metric keys, not a string")
        wanted = set(only)
        specs = [s for s in specs if s.key in wanted]
    x = _Exposures(experiment, until, phase, _aware(since))

    # Segments: rank them by units, fold the tail into "(other)".
    seg_sql, seg_params = None, []
    if segment is not None:
        attribute, max_segments, min_units, expression = segment
        key_sql, key_params = expression or _segment_key_sql(x.attributes, attribute)
        ranked = _fetch(
            f"SELECT s, COUNT(*) AS n FROM (SELECT {key_sql} AS s FROM {x.table} WHERE {x.where}) AS k "
            f"GROUP BY s ORDER BY n DESC, s LIMIT %s",
            [*key_params, *x.params, max_segments + 1],
        )
        if not ranked:
            return {}
        names = [str(s) for s, n in ranked if n >= min_units or s == NONE_SEGMENT]
        if len(ranked) <= max_segments and len(names) == len(ranked):
            seg_sql, seg_params = key_sql, key_params
        else:
            names = names[:max_segments]
            placeholders = ", ".join(["%s"] * len(names))
            if names:
                seg_sql = f"CASE WHEN {key_sql} IN ({placeholders}) THEN {key_sql} ELSE %s END"
                seg_params = [*key_params, *names, *key_params, OTHER_SEGMENT]
            else:  # every value is too small: one "(other)" segment
                seg_sql, seg_params = f"CAST(%s AS {_d().text_type})", [OTHER_SEGMENT]
            names.append(OTHER_SEGMENT)
        order = names
    else:
        order = [None]

    # Units per variant (and segment).
    group = f"{x.variant}" + (", s" if seg_sql else "")
    select_seg = f", {seg_sql} AS s" if seg_sql else ""
    rows = _fetch(
        f"SELECT {x.variant}, COUNT(*){', s' if seg_sql else ''} FROM "
        f"(SELECT {x.variant}{select_seg} FROM {x.table} WHERE {x.where}) AS k GROUP BY {group}",
        [*seg_params, *x.params],
    )
    n: dict[tuple[Any, int], int] = {}
    for row in rows:
        n[(row[2] if seg_sql else None, row[0])] = int(row[1])

    sum_specs = [s for s in specs if s.kind != "quantile"]
    sums = _metric_sums(sum_specs, x, until, seg_sql, seg_params) if sum_specs and n else {}
    q_stats = {}
    if n and len(sum_specs) < len(specs):
        from .quantiles import quantile_statistics

        q_stats = quantile_statistics([s for s in specs if s.kind == "quantile"], x, until, seg_sql, seg_params,
                                      alpha=float(experiment.significance_level))

    out: dict[Any, dict[str, dict[str, VariantStats]]] = {}
    for seg in order:
        per_metric = {}
        for spec in specs:
            per_variant = {}
            for variant_id, key in variants.items():
                if spec.kind == "quantile":
                    per_variant[key] = q_stats.get((seg, variant_id, spec.key)) or VariantStats(n=0)
                    continue
                s = sums.get((seg, variant_id))
                i = sum_specs.index(spec)
                per_variant[key] = _variant_stats(spec, n.get((seg, variant_id), 0), s[i] if s else None)
            per_metric[spec.key] = per_variant
        out[seg] = per_metric
    return out


def _metric_sums(specs: list[_Spec], x: _Exposures, until, seg_sql, seg_params):
    """One query: {(segment, variant_id): [per-metric tuple of sums]}."""
    bounds = _fetch(f"SELECT MIN({x.first_seen}), MAX({x.first_seen}) FROM {x.table} WHERE {x.where}", x.params)
    first, last = (_d().parse_timestamp(v) for v in bounds[0])
    if first is None:
        return {}
    windows = {s.window for s in specs if s.window}
    pres = {s.pre for s in specs if s.pre}
    max_pre = max(pres, default=0)
    # Constant time bounds on the event scan: an index range or partition pruning can use them.
    lo = first - timedelta(hours=max_pre)
    hi_candidates = [until] if until is not None else []
    if all(s.window for s in specs):
        hi_candidates.append(last + timedelta(hours=max(windows)))
    hi = min(hi_candidates) if hi_candidates else None

    shift_cols: dict[int, str] = {}
    shift_select: list[str] = []
    shift_params: list[Any] = []

    def shift_col(hours: int) -> str:
        return shift_cols[hours]

    for hours in sorted({*windows, *(-p for p in pres)}):
        name = f"w{hours}" if hours > 0 else f"p{-hours}"
        shift_cols[hours] = name
        sql, params = _d().shift(f"x0.{x.first_seen}", hours)
        shift_select.append(f"{sql} AS {name}")
        shift_params += params

    columns = _Columns()
    value_cols: list[list[str]] = []  # per metric: [y, d?, p?]
    for spec in specs:
        cols = [columns.get(spec.event, spec.aggregation, "post", spec.window, shift_col)]
        if spec.kind == "ratio":
            cols.append(columns.get(spec.den_event, spec.den_aggregation, "post", spec.window, shift_col))
        if spec.pre:
            cols.append(columns.get(spec.event, spec.aggregation, "pre", spec.pre, shift_col))
            if spec.kind == "ratio":
                cols.append(columns.get(spec.den_event, spec.den_aggregation, "pre", spec.pre, shift_col))
        value_cols.append(cols)

    ev = Event._meta
    etable = _q(ev.db_table)
    e_unit, e_event, e_ts = (f"e.{_q(_event_col(n))}" for n in ("unit_id", "event", "timestamp"))
    events = sorted({s.event for s in specs} | {s.den_event for s in specs if s.den_event})
    seg_col = ", x0.s" if seg_sql else ""
    seg_inner = f", {seg_sql} AS s" if seg_sql else ""
    x_cte = (
        f"SELECT x0.{x.unit} AS unit_id, x0.{x.variant} AS variant_id, x0.{x.first_seen} AS t0"
        + "".join(f", {s}" for s in shift_select)
        + f"{seg_col} FROM (SELECT *{seg_inner} FROM {x.table} WHERE {x.where}) AS x0"
    )
    x_params = [*shift_params, *seg_params, *x.params]
    start_col = f"x.{shift_col(-max_pre)}" if max_pre else "x.t0"
    where = [f"{e_event} IN ({', '.join(['%s'] * len(events))})", f"{e_ts} >= %s", f"{e_ts} >= {start_col}"]
    where_params: list[Any] = [*events, _adapt(lo)]
    if hi is not None:
        where.append(f"{e_ts} < %s")
        where_params.append(_adapt(hi))
    group = "x.unit_id, x.variant_id" + (", x.s" if seg_sql else "")
    events_source = _d().source(etable, "e")
    join = (f"{events_source} JOIN x" if _d().exposures_on_the_right else f"x JOIN {events_source}")
    u_cte = (
        f"SELECT x.variant_id AS variant_id{', x.s AS s' if seg_sql else ''}, "
        + ", ".join(columns.sql)
        + f" FROM {join} ON {e_unit} = x.unit_id WHERE {' AND '.join(where)} GROUP BY {group}"
    )
    u_params = [*columns.params, *where_params]

    v_select: list[str] = []
    v_params: list[Any] = []
    sums_select: list[str] = ["COUNT(*)"]  # units with a row (the others have value 0)
    pilots: list[tuple[str, str]] = []  # (AVG(y), its column)
    for i, (spec, cols) in enumerate(zip(specs, value_cols, strict=True)):
        y = f"y{i}"
        v_select.append(f"{_value_sql(spec, cols[0], v_params)} AS {y}")
        sums_select += [f"SUM({y})", f"SUM({y} * {y})"]
        flags = [columns.flags[c] for c in cols if c in columns.flags]
        if flags:
            v_select.append(f"CASE WHEN {' + '.join(f'COALESCE({f}, 0)' for f in flags)} > 0 THEN 1 ELSE 0 END AS f{i}")
            sums_select.append(f"SUM(f{i})")
        else:
            sums_select.append("0")
        if _has_moments(spec):
            pilots.append((f"AVG({y})", f"c{i}"))
            z = f"({y} - c{i})"
            sums_select += [f"MIN(c{i})", f"SUM({z})", f"SUM({z} * {z})", f"SUM({z} * {z} * {z})"]
        rest = cols[1:]
        if spec.kind == "ratio":
            d = f"d{i}"
            v_select.append(f"{_value_sql(spec, rest.pop(0), v_params, capped=False)} AS {d}")
            sums_select += [f"SUM({d})", f"SUM({d} * {d})", f"SUM({y} * {d})"]
        if spec.pre:
            p = f"p{i}"
            v_select.append(f"{_value_sql(spec, rest.pop(0), v_params)} AS {p}")
            sums_select += [f"SUM({p})", f"SUM({p} * {p})", f"SUM({p} * {y})"]
            if spec.kind == "ratio":  # CUPED for ratios: the pre-period denominator and cross sums
                pd = f"pd{i}"
                v_select.append(f"{_value_sql(spec, rest.pop(0), v_params, capped=False)} AS {pd}")
                sums_select += [f"SUM({pd})", f"SUM({pd} * {pd})", f"SUM({p} * {pd})",
                                f"SUM({p} * d{i})", f"SUM({pd} * {y})", f"SUM({pd} * d{i})"]
    seg_out = ", s" if seg_sql else ""
    materialized = _d().cte("exposures")
    v_cte = f"v AS (SELECT variant_id{seg_out}, {', '.join(v_select)} FROM u)"
    source = "v"
    if pilots and _d().window_pilots:  # the pilot means as window aggregates: u is read once
        source = f"(SELECT *, {', '.join(f'{avg} OVER () AS {c}' for avg, c in pilots)} FROM v) AS v"
    elif pilots:  # per-metric shift (pilot mean): v is read twice and c once per row, so both are
        # materialised (else, without table statistics, PostgreSQL re-aggregates c for every row)
        v_cte = (
            f"v AS {_d().cte('reused')}(SELECT variant_id{seg_out}, {', '.join(v_select)} FROM u), "
            f"c AS {_d().cte('reused')}(SELECT {', '.join(f'{avg} AS {c}' for avg, c in pilots)} FROM v)"
        )
        source = "v CROSS JOIN c"
    sql = (
        f"WITH x AS {materialized}({x_cte}), "
        f"u AS ({u_cte}), "
        f"{v_cte} "
        f"SELECT variant_id{seg_out}, {', '.join(sums_select)} FROM {source} GROUP BY variant_id{seg_out}"
    )
    rows = _fetch(sql, [*x_params, *u_params, *v_params], heavy=True)

    out: dict[tuple[Any, int], list[tuple]] = {}
    for row in rows:
        variant_id = row[0]
        seg = row[1] if seg_sql else None
        values = [float(v or 0.0) for v in row[2 if seg_sql else 1:]]
        rows_n, values = int(values[0]), values[1:]
        per_metric = []
        pos = 0
        for spec in specs:
            width = _width(spec)
            per_metric.append((rows_n, *values[pos : pos + width]))
            pos += width
        out[(seg, variant_id)] = per_metric
    return out


def _has_moments(spec: _Spec) -> bool:
    """Centred second and third moments are computed for count and sum metrics."""
    return spec.kind in ("count", "sum")


def _width(spec: _Spec) -> int:
    """Aggregate columns per metric: sum, sum_sq, clamped, [ratio 3], [moments 4], [pre 3],
    [ratio pre 6]."""
    ratio = spec.kind == "ratio"
    return (3 + (3 if ratio else 0) + (4 if _has_moments(spec) else 0) + (3 if spec.pre else 0)
            + (6 if spec.pre and ratio else 0))


def _centred(n: int, rows: int, c: float, z1: float, z2: float, z3: float) -> tuple[float, float]:
    """(m2, m3) about the mean from sums of z = y - c over the ``rows`` units with a row; the
    other ``n - rows`` units have y = 0, i.e. z = -c."""
    k = n - rows
    s1 = z1 - k * c
    s2 = z2 + k * c * c
    s3 = z3 - k * c * c * c
    m2 = max(0.0, s2 - s1 * s1 / n)
    m3 = s3 - 3.0 * s1 * s2 / n + 2.0 * s1 * s1 * s1 / (n * n)
    return m2, m3


def _variant_stats(spec: _Spec, n: int, sums: tuple | None) -> VariantStats:
    ratio = spec.kind == "ratio"
    width = _width(spec)
    values = list(sums) if sums else [0] + [0.0] * width
    rows_n, values = int(values[0]), values[1:]
    s, q, clamped = values[0], values[1], int(values[2])
    rest = values[3:]
    m2 = m3 = None
    if _has_moments(spec):
        c, z1, z2, z3 = rest[:4]
        rest = rest[4:]
        if n > 0:
            m2, m3 = _centred(n, rows_n, c, z1, z2, z3)
    den_sum = den_sum_sq = cross = None
    if ratio:
        den_sum, den_sum_sq, cross = rest[:3]
        rest = rest[3:]
    pre_sum = pre_sum_sq = pre_cross = None
    ratio_pre: dict[str, float] = {}
    if spec.pre:
        pre_sum, pre_sum_sq, pre_cross = rest[:3]
        if ratio:
            names = ("pre_den_sum", "pre_den_sum_sq", "pre_num_den", "pre_num_x_den", "pre_den_x_num", "pre_den_x_den")
            ratio_pre = dict(zip(names, rest[3:9], strict=True))
    if spec.kind == "conversion":
        q = s
    return VariantStats(
        n=n, sum=s, sum_sq=q, den_sum=den_sum, den_sum_sq=den_sum_sq, cross_sum=cross,
        pre_sum=pre_sum, pre_sum_sq=pre_sum_sq, pre_cross=pre_cross,
        m2=m2, m3=m3, clamped_units=clamped, **ratio_pre,
    )


# --- vendor differences and plumbing -----------------------------------------------------------


def _engine() -> dialects.Engine | None:
    """The engine in use: ``dialects.using``'s, else ClickHouse when ``ANALYTICS_BACKEND`` says
    so, else None (Django's connection)."""
    engine = dialects.current_engine()
    if engine is None and getattr(settings, "ANALYTICS_BACKEND", "django") != "django":
        from .clickhouse import settings_engine

        engine = settings_engine()
    return engine


def _d() -> dialects.Dialect:
    """The dialect of the engine in use, else of Django's connection."""
    engine = _engine()
    return engine.dialect if engine is not None else dialects.for_vendor(connection.vendor)


def _q(name: str) -> str:
    return _d().quote(name)


def _event_col(name: str) -> str:
    return Event._meta.get_field(name).column


_sqlite_shift_hours = dialects.sqlite_shift_hours


def _adapt(value: datetime) -> Any:
    return _d().timestamp(value)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError("until must be a datetime")
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def _variant_keys(experiment) -> dict[int, str]:
    return {v.pk: v.key for v in experiment.variants.all()}


def _work_mem() -> str | None:
    value = str(getattr(settings, "ANALYSIS_WORK_MEM", "256MB")).strip()
    return value if value and _WORK_MEM_RE.fullmatch(value) else None


def _fetch(sql: str, params: Iterable[Any], *, heavy: bool = False) -> list[tuple]:
    """Run one query; heavy ones get more ``work_mem`` on PostgreSQL (hash join + aggregate of
    every exposed unit stay in memory instead of spilling to disk)."""
    params = list(params)
    engine = _engine()
    if engine is not None:
        return [tuple(row) for row in engine.execute(engine.dialect, sql, params)]
    vendor = connection.vendor
    if vendor == "sqlite":
        connection.ensure_connection()
        connection.connection.create_function("abp_shift_hours", 2, _sqlite_shift_hours, deterministic=True)
    work_mem = _work_mem() if heavy and vendor == "postgresql" else None
    if not work_mem:  # no transaction: on SQLite it would take the write lock (IMMEDIATE mode)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', %s, true)", [work_mem])  # this transaction only
        cursor.execute(sql, params)
        return cursor.fetchall()
