"""Per-day series of every metric and variant: what happened each day and where the estimate stood.

An analyst asks "how did this metric move day by day?", which the snapshot history (one point
per recomputation) cannot answer. This module answers it from ONE aggregation query:

* per unit and UTC day, the unit's post-exposure event aggregates of that day (the same
  filtered aggregates, windows, caps and clamping as ``analysis.queries``);
* per unit, a running total over its days (one window function), turned into the per-unit
  metric value as of the end of each day and as of its previous event day (the running total
  minus the day's own value; cap applied to the running total, conversion = 1 once converted),
  hence the *increments* of that value, its square and its products (ratio denominator, CUPED
  pre-period) on each day;
* summed per variant and day, together with the units first exposed that day (and their
  pre-period sums): a small table of per-day increments of the sufficient statistics.

Cumulating that table in Python gives, for every day D, exactly the sufficient statistics of an
"as of the end of D" report (units first exposed by then, their events before then), so the
cumulative estimate and its interval come from the statistics engine unchanged (the last day's
equals the report's own). Raw rows never reach Python.

Definitions (stored under ``daily_series`` of the report payload, served by the results API):

* ``value``: the day's increment of the metric total per unit exposed by the end of that day
  (conversion: units converting for the first time that day per exposed unit; count/sum: events
  or value added that day per exposed unit; ratio: the day's numerator over the day's
  denominator);
* ``mean``, ``lift`` (relative), ``ci_relative``, ``p_value``: the cumulative estimate as of the
  end of that day, with the report's own settings (CUPED, sequential, correction);
* the day the data stops in, when it stops before midnight, is ``partial`` (charts mark it as
  incomplete instead of drawing a drop);
* quantile metrics are order statistics, not sums, so they have no per-day increments: they are
  listed under ``excluded``.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings

from . import queries as q
from .models import Event
from .stats import MetricInput, StatsInputError, VariantStats, analyze_experiment

DEFAULT_MAX_DAYS = 90
VALUE_DEFINITION = (
    "value: the day's increment of the metric per unit exposed by the end of that day (ratio: the "
    "day's numerator over its denominator); mean, lift and intervals: the cumulative estimate as "
    "of the end of that day."
)


def max_days() -> int:
    """``REPORT_DAILY_MAX_DAYS``: the payload keeps at most this many (latest) days."""
    value = getattr(settings, "REPORT_DAILY_MAX_DAYS", DEFAULT_MAX_DAYS)
    return max(1, int(value)) if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_MAX_DAYS


RATIO_PRE = ("pre_den_sum", "pre_den_sum_sq", "pre_num_den", "pre_num_x_den", "pre_den_x_num", "pre_den_x_den")


def _width(spec: q._Spec) -> int:
    """Summed columns per metric: y, y^2, [ratio: d, d^2, y d], [pre: p, p^2, p y], [ratio and
    pre: pd, pd^2, p pd, p d, pd y, pd d] (the report's CUPED for ratios)."""
    ratio = spec.kind == "ratio"
    return 2 + (3 if ratio else 0) + (3 if spec.pre else 0) + (6 if spec.pre and ratio else 0)


def daily_increments(
    experiment, *, until: datetime | None = None, phase: int | None = None, since: datetime | None = None,
) -> tuple[list[q._Spec], dict[tuple[str, int], list[float]]]:
    """``(specs, {(day, variant_id): [new units, per-metric increments...]})`` in one query.

    Per metric the increments are those of sum y, sum y^2, then for ratio metrics of sum d,
    sum d^2, sum y d, then with a pre-period of sum p, sum p^2, sum p y (see ``_width``).
    """
    until = q._aware(until)
    # Quantile metrics are order statistics, not sums: they have no per-day increments.
    specs = [s for s in q._specs(experiment) if s.kind != "quantile"]
    x = q._Exposures(experiment, until, phase, q._aware(since))
    if not specs:
        return specs, {}
    d = q._d()
    bounds = q._fetch(f"SELECT MIN({x.first_seen}) FROM {x.table} WHERE {x.where}", x.params)
    first = d.parse_timestamp(bounds[0][0]) if bounds else None
    if first is None:
        return specs, {}
    sql, params = _daily_sql(specs, x, until, first)
    rows = q._fetch(sql, params, heavy=True)
    out: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        day = _iso_day(row[0])
        acc = out.setdefault((day, row[1]), [0.0] * (len(row) - 2))
        for i, v in enumerate(row[2:]):
            acc[i] += float(v or 0.0)
    return specs, out


def _daily_sql(specs: list[q._Spec], x: q._Exposures, until: datetime | None, first: datetime) -> tuple[str, list]:
    d = q._d()
    windows = {s.window for s in specs if s.window}
    pres = {s.pre for s in specs if s.pre}
    max_pre = max(pres, default=0)
    shift_cols: dict[int, str] = {}
    shift_select: list[str] = []
    shift_params: list[Any] = []
    for hours in sorted({*windows, *(-p for p in pres)}):
        name = f"w{hours}" if hours > 0 else f"p{-hours}"
        shift_cols[hours] = name
        sql, params = d.shift(f"x0.{x.first_seen}", hours)
        shift_select.append(f"{sql} AS {name}")
        shift_params += params

    def shift_col(hours: int) -> str:
        return shift_cols[hours]

    post, pre = q._Columns(), q._Columns()
    cols: list[tuple[str, str | None, str | None, str | None]] = []  # (y, den, pre, pre den) columns
    for spec in specs:
        y = post.get(spec.event, spec.aggregation, "post", spec.window, shift_col)
        den = post.get(spec.den_event, spec.den_aggregation, "post", spec.window, shift_col) if spec.kind == "ratio" else None
        p = pre.get(spec.event, spec.aggregation, "pre", spec.pre, shift_col) if spec.pre else None
        pd = pre.get(spec.den_event, spec.den_aggregation, "pre", spec.pre, shift_col) if p and den else None
        cols.append((y, den, p, pd))

    e_unit, e_event, e_ts = (f"e.{q._q(q._event_col(n))}" for n in ("unit_id", "event", "timestamp"))
    etable = d.source(q._q(Event._meta.db_table), "e")
    events = sorted({s.event for s in specs} | {s.den_event for s in specs if s.den_event})
    in_events = f"{e_event} IN ({', '.join(['%s'] * len(events))})"
    x_cte = (
        f"SELECT x0.{x.unit} AS unit_id, x0.{x.variant} AS variant_id, x0.{x.first_seen} AS t0, "
        f"{d.day(f'x0.{x.first_seen}')} AS d0" + "".join(f", {s}" for s in shift_select)
        + f" FROM (SELECT * FROM {x.table} WHERE {x.where}) AS x0"
    )
    x_params = [*shift_params, *x.params]
    hi = [f"{e_ts} < %s"] if until is not None else []
    hi_params = [q._adapt(until)] if until is not None else []

    # ud: per unit and event day, the post-exposure aggregates of that day.
    ud_cte = (
        f"SELECT x.unit_id AS unit_id, x.variant_id AS variant_id, {d.day(e_ts)} AS d, {', '.join(post.sql)} "
        f"FROM x JOIN {etable} ON {e_unit} = x.unit_id "
        f"WHERE {' AND '.join([in_events, f'{e_ts} >= %s', f'{e_ts} >= x.t0', *hi])} "
        f"GROUP BY x.unit_id, x.variant_id, {d.day(e_ts)}"
    )
    ud_params = [*post.params, *events, q._adapt(first), *hi_params]
    ctes = [f"x AS {d.cte('exposures')}({x_cte})", f"ud AS ({ud_cte})"]
    params: list[Any] = [*x_params, *ud_params]
    if pre.sql:  # per unit: its pre-period aggregates (CUPED covariate), constant over its days
        pr_cte = (
            f"SELECT x.unit_id AS unit_id, {', '.join(pre.sql)} FROM x JOIN {etable} ON {e_unit} = x.unit_id "
            f"WHERE {in_events} AND {e_ts} >= %s AND {e_ts} >= x.{shift_col(-max_pre)} AND {e_ts} < x.t0 "
            f"GROUP BY x.unit_id"
        )
        ctes.append(f"pr AS ({pr_cte})")
        params += [*pre.params, *events, q._adapt(first - timedelta(hours=max_pre))]

    # cu: running totals per unit over its event days (one window), next to the day's own value.
    summed = list(dict.fromkeys(c for y, den, _, _ in cols for c in (y, den) if c))
    running = ", ".join(
        # new names (ClickHouse resolves a name to a select alias before a column)
        f"SUM({c}) OVER (PARTITION BY unit_id ORDER BY d ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {c}_r, "
        f"COALESCE({c}, 0) AS {c}_d"
        for c in summed
    )
    ctes.append(f"cu AS (SELECT unit_id, variant_id, d, {running} FROM ud)")
    # vu: per-unit values as of the end of each event day and of the unit's previous event day
    # (the running total minus the day's value: no second window), cap on the running total.
    v_select, v_params = [], []
    p_select, p_params = [], []
    for i, (spec, (y, den, p, pd)) in enumerate(zip(specs, cols, strict=True)):
        v_select.append(f"{q._value_sql(spec, f'cu.{y}_r', v_params)} AS y{i}")
        v_select.append(f"{q._value_sql(spec, f'(cu.{y}_r - cu.{y}_d)', v_params)} AS y{i}_")
        if den:
            v_select.append(f"{q._value_sql(spec, f'cu.{den}_r', v_params, capped=False)} AS d{i}")
            v_select.append(f"{q._value_sql(spec, f'(cu.{den}_r - cu.{den}_d)', v_params, capped=False)} AS d{i}_")
        if p:
            v_select.append(f"{q._value_sql(spec, f'pr.{p}', v_params)} AS p{i}")
            p_select.append(f"{q._value_sql(spec, f'pr.{p}', p_params)} AS p{i}")
        if pd:
            v_select.append(f"{q._value_sql(spec, f'pr.{pd}', v_params, capped=False)} AS pd{i}")
            p_select.append(f"{q._value_sql(spec, f'pr.{pd}', p_params, capped=False)} AS pd{i}")
    join_pre = " LEFT JOIN pr ON pr.unit_id = cu.unit_id" if pre.sql else ""
    ctes.append(f"vu AS (SELECT cu.variant_id AS variant_id, cu.d AS d, "
                f"{', '.join(v_select)} FROM cu{join_pre})")
    params += v_params

    zero = d.cast_float("0")
    inc, exp_cols = [], []
    for i, (_, den, p, pd) in enumerate(cols):
        y, y_ = f"y{i}", f"y{i}_"
        inc += [f"SUM({y} - {y_})", f"SUM({y} * {y} - {y_} * {y_})"]
        exp_cols += [zero, zero]
        if den:
            dn, dn_ = f"d{i}", f"d{i}_"
            inc += [f"SUM({dn} - {dn_})", f"SUM({dn} * {dn} - {dn_} * {dn_})", f"SUM({y} * {dn} - {y_} * {dn_})"]
            exp_cols += [zero, zero, zero]
        if p:
            pv = f"COALESCE(p{i}, {zero})"
            inc += [zero, zero, f"SUM({pv} * ({y} - {y_}))"]
            exp_cols += [f"SUM(COALESCE(p{i}, {zero}))", f"SUM(COALESCE(p{i}, {zero}) * COALESCE(p{i}, {zero}))", zero]
        if pd:  # pd, pd^2, p pd on the exposure day; p d, pd y, pd d as d and y grow
            pdv = f"COALESCE(pd{i}, {zero})"
            inc += [zero, zero, zero, f"SUM({pv} * (d{i} - d{i}_))", f"SUM({pdv} * ({y} - {y_}))",
                    f"SUM({pdv} * (d{i} - d{i}_))"]
            exp_cols += [f"SUM({pdv})", f"SUM({pdv} * {pdv})", f"SUM(COALESCE(p{i}, {zero}) * {pdv})", zero, zero, zero]
    # xp: the units first exposed each day (with their pre-period values).
    xp_from = f"(SELECT x.variant_id AS variant_id, x.d0 AS d0{''.join(', ' + s for s in p_select)} FROM x"
    xp_from += " LEFT JOIN pr ON pr.unit_id = x.unit_id) AS xp" if pre.sql else ") AS xp"
    params += p_params
    sql = (
        f"WITH {', '.join(ctes)} "
        f"SELECT d0 AS d, variant_id, COUNT(*), {', '.join(exp_cols)} FROM {xp_from} GROUP BY d0, variant_id "
        f"UNION ALL "
        f"SELECT d, variant_id, 0, {', '.join(inc)} FROM vu GROUP BY d, variant_id"
    )
    return sql, params


def _iso_day(value: Any) -> str:
    return value.isoformat()[:10] if hasattr(value, "isoformat") else str(value)[:10]


def _stats(spec: q._Spec, n: int, acc: list[float]) -> VariantStats:
    s, sq = acc[0], acc[1]
    rest = acc[2:]
    den = rest[:3] if spec.kind == "ratio" else [None, None, None]
    rest = rest[3:] if spec.kind == "ratio" else rest
    pre = rest[:3] if spec.pre else [None, None, None]
    ratio_pre = dict(zip(RATIO_PRE, rest[3:9], strict=True)) if spec.pre and spec.kind == "ratio" else {}
    if spec.kind == "conversion":
        sq = s
    return VariantStats(n=n, sum=s, sum_sq=max(0.0, sq), den_sum=den[0], den_sum_sq=den[1], cross_sum=den[2],
                        pre_sum=pre[0], pre_sum_sq=pre[1], pre_cross=pre[2], **ratio_pre)


def _daily_value(spec: q._Spec, n: int, inc: list[float]) -> float | None:
    if spec.kind == "ratio":
        return inc[0] / inc[2] if inc[2] else None
    return inc[0] / n if n else None


def partial_day(until: datetime | None) -> str | None:
    """The UTC day the data stops in when it stops before that day's end (else None)."""
    if until is None:
        return None
    if (until.hour, until.minute, until.second, until.microsecond) == (0, 0, 0, 0):
        return None
    return until.date().isoformat()


def daily_series(
    experiment, *, until: datetime, common: dict[str, Any], metric_links: list, variant_keys: dict[int, str],
    planned_sample_size: int | None = None, phase: int | None = None, since: datetime | None = None,
) -> dict[str, Any]:
    """The ``daily_series`` block of a report payload (see the module docstring).

    ``common`` holds the ``analyze_experiment`` settings the report used (control, weights,
    alpha, correction, sequential, cuped, power); ``metric_links`` the experiment's metric links
    (role, margin); ``variant_keys`` {variant id: key} of the variants analysed.
    """
    specs, table = daily_increments(experiment, until=until, phase=phase, since=since)
    partial = partial_day(until)
    included = {s.key for s in specs}
    out: dict[str, Any] = {"days": [], "partial_day": None, "omitted_days": 0, "definition": VALUE_DEFINITION,
                           "metrics": [],
                           "excluded": [em.metric.key for em in metric_links if em.metric.key not in included]}
    if not table:
        return out
    first = date.fromisoformat(min(day for day, _ in table))
    last = date.fromisoformat(max(day for day, _ in table))
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    keep = days[-max_days():]
    kept = set(keep)
    links = {em.metric.key: em for em in metric_links}
    width = [_width(s) for s in specs]
    offsets = [sum(width[:i]) for i in range(len(specs))]
    cumulative = {vid: [0.0] * (1 + sum(width)) for vid in variant_keys}
    series: dict[str, dict[str, list[dict[str, Any]]]] = {
        s.key: {key: [] for key in variant_keys.values()} for s in specs if s.key in links}
    for day in days:
        for vid in variant_keys:
            inc = table.get((day, vid))
            if inc:
                acc = cumulative[vid]
                for i, v in enumerate(inc):
                    acc[i] += v
        if day not in kept:
            continue
        inputs = []
        for spec, off, w in zip(specs, offsets, width, strict=True):
            em = links.get(spec.key)
            if em is None:
                continue
            per_variant = {key: _stats(spec, int(cumulative[vid][0]), cumulative[vid][1 + off: 1 + off + w])
                           for vid, key in variant_keys.items()}
            inputs.append(MetricInput(key=spec.key, name=em.metric.name, kind=spec.kind, role=em.role,
                                      direction=em.metric.direction, variants=per_variant,
                                      non_inferiority_margin=em.non_inferiority_margin))
        try:
            result = analyze_experiment(metrics=inputs, exposure_counts=None, planned_sample_size=planned_sample_size,
                                        **common)
        except StatsInputError:
            result = {"metrics": []}
        by_key = {m["metric"]: m for m in result["metrics"]}
        for spec, off, w in zip(specs, offsets, width, strict=True):
            if spec.key not in series:
                continue
            entries = {v["variant"]: v for v in (by_key.get(spec.key) or {}).get("variants") or []}
            for vid, key in variant_keys.items():
                n = int(cumulative[vid][0])
                inc = table.get((day, vid)) or [0.0] * (1 + sum(width))
                v = entries.get(key) or {}
                lift = v.get("lift") or {}
                series[spec.key][key].append({
                    "date": day, "partial": day == partial, "units": n,
                    "value": _daily_value(spec, n, inc[1 + off: 1 + off + w]),
                    "mean": v.get("mean"),
                    "lift": lift.get("relative"), "ci_relative": lift.get("ci_relative"),
                    "lift_absolute": lift.get("absolute"), "ci_absolute": lift.get("ci_absolute"),
                    "p_value": v.get("p_value"),
                })
    control = common.get("control")
    out.update(days=keep, partial_day=partial if partial in kept else None, omitted_days=len(days) - len(keep))
    out["metrics"] = [
        {"metric": s.key, "name": links[s.key].metric.name, "kind": s.kind, "role": links[s.key].role,
         "variants": [{"variant": key, "is_control": key == control, "points": points}
                      for key, points in series[s.key].items()]}
        for s in specs if s.key in series
    ]
    return out
