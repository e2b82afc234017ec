"""Quantile metrics (median, p90, p99 of a per-unit value): order statistics and the delta method.

The method (GrowthBook documents the same construction for its quantile tests):

* Estimate: the ``ceil(n q)``-th smallest of the ``n`` per-unit values (the inverse of the
  empirical distribution function, numpy's ``method="inverted_cdf"``).
* Per-variant confidence interval, distribution-free: the rank of the true q-quantile among the
  n values is Binomial(n, q), about Normal(n q, n q (1 - q)); so the order statistics at ranks
  ``L = floor(n q - z sqrt(n q (1 - q)))`` and ``U = ceil(n q + z sqrt(n q (1 - q)))`` bracket
  it with probability about 1 - alpha (rounded outwards: never narrower than asked). When L < 1
  or U > n there are too few units for the interval and nothing is inferred.
* Standard error: the asymptotic variance of a sample quantile is q (1 - q) / (n f(Q)^2) with f
  the density at the quantile. The interval estimates it: f(Q) ~ ((U - L) / n) / (x_U - x_L),
  so ``se = sqrt(n q (1 - q)) (x_U - x_L) / (U - L)``, i.e. (x_U - x_L) / (2 z) up to the
  rounding of the ranks (which this form accounts for).
* Difference of two variants' quantiles: independent arms, se = sqrt(se_1^2 + se_0^2), a z-test
  and interval; relative difference Q_1/Q_0 - 1 by the delta method (as for means).

Only the order statistics at three ranks per variant are needed, and the SQL picks them with a
window function (``analysis.quantiles``); :func:`order_statistics` is the same selection on an
array, for tests and simulations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike

from . import frequentist
from .inputs import CleanStats
from .moments import Estimate, Insufficient

#: The quantile level is stored with 4 decimals; ranks use it as an exact fraction of 10,000.
Q_SCALE = 10_000


def quantile_label(q: float) -> str:
    """0.5 -> "median", 0.9 -> "p90", 0.999 -> "p99.9"."""
    if abs(q - 0.5) < 1e-12:
        return "median"
    return "p" + f"{q * 100:.4f}".rstrip("0").rstrip(".")


def q_numerator(q: float) -> int:
    """q as an integer number of 1/10,000 (exact: the level has at most 4 decimals)."""
    return int(round(q * Q_SCALE))


def point_rank(n: int, q: float) -> int:
    """ceil(n q) in exact arithmetic (at least 1)."""
    return max(1, math.ceil(Fraction(n * q_numerator(q), Q_SCALE)))


def interval_ranks(n: int, q: float, z: float) -> tuple[int | None, int | None]:
    """(L, U): the largest rank <= n q - z s and the smallest >= n q + z s, s = sqrt(n q (1-q));
    None where that rank falls outside 1..n. The SQL tests the same inequalities in squared
    form, ``(n q - r)^2 >= z^2 n q (1 - q)``, so both agree."""
    nq = n * q
    half = z * math.sqrt(nq * (1.0 - q))
    lower = math.floor(nq - half)
    upper = math.ceil(nq + half)
    return (lower if lower >= 1 else None), (upper if upper <= n else None)


def units_needed(q: float, z: float, limit: int = 10**7) -> int | None:
    """The smallest n for which both interval ranks exist (None beyond ``limit``)."""
    # L >= 1 needs about n >= z^2 (1 - q)/q, U <= n about n >= z^2 q/(1 - q): start below, walk up.
    n = max(1, int(0.9 * z * z * max(q / (1.0 - q), (1.0 - q) / q)) - 2)
    while n <= limit:
        lo, hi = interval_ranks(n, q, z)
        if lo is not None and hi is not None:
            return n
        n += 1 if n < 10_000 else max(1, n // 1000)
    return None


@dataclass(frozen=True)
class OrderStatistics:
    """What the SQL returns per variant: n, the estimate and the interval's ends with ranks."""

    n: int
    value: float | None
    lower: float | None
    upper: float | None
    lower_rank: int | None
    upper_rank: int | None


def order_statistics(values: ArrayLike, q: float, alpha: float) -> OrderStatistics:
    """The order statistics the SQL selects, from raw values (tests, simulations)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = int(x.size)
    if n == 0:
        return OrderStatistics(0, None, None, None, None, None)
    z = frequentist.z_critical(alpha)
    lo, hi = interval_ranks(n, q, z)
    return OrderStatistics(
        n, float(x[point_rank(n, q) - 1]),
        None if lo is None else float(x[lo - 1]), None if hi is None else float(x[hi - 1]), lo, hi,
    )


def standard_error(n: int, q: float, lower: float, upper: float, lower_rank: int, upper_rank: int) -> float:
    """sqrt(n q (1-q)) (x_U - x_L) / (U - L): the delta-method se with the density at the
    quantile estimated from the order-statistic interval."""
    return math.sqrt(n * q * (1.0 - q)) * (upper - lower) / (upper_rank - lower_rank)


def quantile_estimate(st: CleanStats, q: float, alpha: float) -> Estimate | Insufficient:
    """The variant's quantile as an :class:`Estimate` (mean = the quantile, unit variance =
    n se^2, so the shared machinery of the report applies), or why there is none."""
    label = quantile_label(q)
    value, lower, upper, lo_r, hi_r = st.quantile or (None, None, None, None, None)
    if st.n == 0 or value is None:
        return Insufficient("no units with a value in this variant yet")
    if lower is None or upper is None or lo_r is None or hi_r is None:
        needed = units_needed(q, frequentist.z_critical(alpha))
        more = f" (about {needed:,} are needed)" if needed else ""
        return Insufficient(
            f"only {st.n:,} units with a value: too few for a confidence interval of the {label}{more}"
        )
    if upper <= lower or hi_r <= lo_r:
        return Insufficient(
            f"the values around the {label} are tied (many units share the value {value:g}), so its "
            "precision cannot be estimated"
        )
    se = standard_error(st.n, q, lower, upper, lo_r, hi_r)
    return Estimate(st.n, value, se * se * st.n)


def z_difference(t: Estimate, c: Estimate, alpha: float) -> tuple[float, float, float, float]:
    """(difference, se, two-sided p, critical z) of two independent quantile estimates."""
    diff = t.mean - c.mean
    se = math.sqrt(t.var_mean + c.var_mean)
    p = float(frequentist.z_pvalue(diff / se))
    return diff, se, p, frequentist.z_critical(alpha)
