"""Quantile metrics in SQL: per variant, the order statistics the quantile method needs.

For each quantile metric one query ranks the per-unit values of each variant (and segment) with
``ROW_NUMBER()`` and returns, per group, only ``n`` and the values (and ranks) at the estimate's
rank ``ceil(n q)`` and at the interval's ranks ``L`` and ``U`` (see ``analysis.stats.quantile``).
No unit-level row leaves the database.

What counts (docs/statistics.md, "Quantile metrics"):

* the per-unit value is the metric's ``numerator_aggregation`` of its event after the unit's
  first exposure (``count`` of events or ``sum`` of their values, each value clamped to
  +-``VALUE_LIMIT``), within the conversion window if the metric has one;
* only units with at least one such event have a value (a p90 load time is over the units that
  loaded a page; ``n`` is the number of those units);
* ranks: estimate at the smallest r with r >= n q (exact: q has four decimals, so r * 10000 >=
  n * q * 10000 in integers); L is the largest r with n q - r >= 0 and (n q - r)^2 >=
  z^2 q (1 - q) n, U the smallest r with r - n q >= 0 and the same inequality, i.e.
  floor(n q - z s) and ceil(n q + z s) without a square root in SQL (SQLite may lack SQRT).
  A missing L or U (outside 1..n) comes back as NULL: too few units for an interval.

Every engine runs the same SQL; what differs comes from the dialect (``analysis.dialects``).
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from .models import Event
from .stats import VariantStats
from .stats.frequentist import z_critical
from .stats.quantile import Q_SCALE, q_numerator


def quantile_statistics(specs, x, until, seg_sql: str | None, seg_params: list[Any], *,
                        alpha: float) -> dict[tuple[Any, int, str], VariantStats]:
    """``{(segment, variant_id, metric_key): VariantStats}`` for the quantile metrics ``specs``
    (``queries._Spec`` with ``kind == "quantile"``) over the exposures ``x``."""
    from . import queries as qy

    if not specs:
        return {}
    d = qy._d()
    bounds = qy._fetch(f"SELECT MIN({x.first_seen}), MAX({x.first_seen}) FROM {x.table} WHERE {x.where}", x.params)
    first, last = (d.parse_timestamp(v) for v in bounds[0])
    if first is None:
        return {}
    z = z_critical(alpha)
    out: dict[tuple[Any, int, str], VariantStats] = {}
    for spec in specs:
        sql, params = _query(spec, x, until, first, last, seg_sql, seg_params, z)
        for row in qy._fetch(sql, params, heavy=True):
            variant_id = row[0]
            seg = row[1] if seg_sql else None
            n, value, lower, lower_rank, upper, upper_rank = row[2 if seg_sql else 1:]
            out[(seg, variant_id, spec.key)] = VariantStats(
                n=int(n), quantile_value=_float(value), quantile_lower=_float(lower),
                quantile_upper=_float(upper), lower_rank=_int(lower_rank), upper_rank=_int(upper_rank),
            )
    return out


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _query(spec, x, until, first, last, seg_sql, seg_params, z: float) -> tuple[str, list[Any]]:
    from . import queries as qy

    d = qy._d()
    col = lambda name: f"e.{qy._q(qy._event_col(name))}"  # noqa: E731
    e_unit, e_event, e_ts, e_value = col("unit_id"), col("event"), col("timestamp"), col("value")

    shift, shift_params = "", []
    if spec.window:
        sql, shift_params = d.shift(f"x0.{x.first_seen}", spec.window)
        shift = f", {sql} AS w"
    seg_col = ", x0.s" if seg_sql else ""
    seg_inner = f", {seg_sql} AS s" if seg_sql else ""
    x_cte = (
        f"SELECT x0.{x.unit} AS unit_id, x0.{x.variant} AS variant_id, x0.{x.first_seen} AS t0{shift}"
        f"{seg_col} FROM (SELECT *{seg_inner} FROM {x.table} WHERE {x.where}) AS x0"
    )
    x_params = [*shift_params, *seg_params, *x.params]

    where = [f"{e_event} = %s", f"{e_ts} >= %s", f"{e_ts} >= x.t0"]
    where_params: list[Any] = [spec.event, qy._adapt(first)]
    if spec.window:
        where.append(f"{e_ts} < x.w")
    his = [until] if until is not None else []
    if spec.window:
        his.append(last + timedelta(hours=spec.window))
    if his:
        where.append(f"{e_ts} < %s")
        where_params.append(qy._adapt(min(his)))
    if spec.aggregation == "count":
        value = d.cast_float("COUNT(*)")
    else:
        lim = qy._limit_sql()
        clamped = f"CASE WHEN {e_value} > {lim} THEN {lim} WHEN {e_value} < -{lim} THEN -{lim} ELSE {e_value} END"
        value = d.cast_float(f"COALESCE(SUM({clamped}), 0)")
    group = "x.unit_id, x.variant_id" + (", x.s" if seg_sql else "")
    seg_out = ", s" if seg_sql else ""
    u_cte = (
        f"SELECT x.variant_id AS variant_id{', x.s AS s' if seg_sql else ''}, {value} AS y "
        f"FROM x JOIN {d.source(qy._q(Event._meta.db_table), 'e')} ON {e_unit} = x.unit_id "
        f"WHERE {' AND '.join(where)} GROUP BY {group}"
    )
    part = f"PARTITION BY variant_id{seg_out}"
    r_cte = (
        f"SELECT variant_id{seg_out}, y, ROW_NUMBER() OVER ({part} ORDER BY y) AS r, "
        f"COUNT(*) OVER ({part}) AS n FROM u"
    )
    q = float(spec.quantile)
    # gap = n q - r, as a double; both interval conditions compare gap^2 with z^2 q (1 - q) n.
    k_cte = (
        f"SELECT variant_id{seg_out}, y, r, n, "
        f"{d.cast_float('n')} * CAST(%s AS {d.float_type}) - {d.cast_float('r')} AS gap FROM r"
    )
    k_params = [q]
    spread = f"gap * gap >= CAST(%s AS {d.float_type}) * {d.cast_float('n')}"
    low = f"gap >= 0 AND {spread}"
    high = f"gap <= 0 AND {spread}"
    c2 = z * z * q * (1.0 - q)
    select = (
        f"SELECT variant_id{seg_out}, MAX(n), "
        f"MIN(CASE WHEN r * {Q_SCALE} >= n * %s THEN y END), "
        f"MAX(CASE WHEN {low} THEN y END), MAX(CASE WHEN {low} THEN r END), "
        f"MIN(CASE WHEN {high} THEN y END), MIN(CASE WHEN {high} THEN r END) "
        f"FROM k GROUP BY variant_id{seg_out}"
    )
    select_params = [q_numerator(q), c2, c2, c2, c2]
    sql = (
        f"WITH x AS {d.cte('exposures')}({x_cte}), u AS ({u_cte}), r AS ({r_cte}), k AS ({k_cte}) {select}"
    )
    return sql, [*x_params, *where_params, *k_params, *select_params]
