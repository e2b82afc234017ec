"""Input types of the engine and their validation.

Everything the engine needs is a handful of sums per variant and metric (sufficient
statistics), so the SQL side can aggregate without ever shipping unit-level rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

from .errors import StatsInputError

KINDS = ("conversion", "count", "sum", "ratio", "quantile")
ROLES = ("primary", "secondary", "guardrail")
DIRECTIONS = ("increase", "decrease")
DEFAULT_MARGIN = 0.02  # guardrail non-inferiority margin (relative) when none is set
MAX_COUNT = 10**15  # far above any real experiment; keeps every square finite


@dataclass(frozen=True)
class VariantStats:
    """Per-variant sufficient statistics of one metric.

    For ``conversion`` metrics ``sum`` is the number of converted units (``sum_sq`` is
    ignored: for a 0/1 value it equals ``sum``). For ``ratio`` metrics ``sum``/``sum_sq``
    describe the per-unit numerators and ``den_*``/``cross_sum`` the per-unit denominators.
    ``pre_*`` are the same metric measured before first exposure (CUPED); units with no
    pre-period activity contribute 0.

    Optional higher-precision moments (count and sum metrics): ``m2`` and ``m3`` are the sums
    of squared and cubed deviations from the variant mean, computed from sums shifted by a
    reference value (so values around 100,000 with an sd of 0.1 keep their variance, which
    ``sum_sq - sum**2/n`` loses to rounding); ``sum_cube`` is the raw sum of cubes. When ``m2``
    is given the variance uses it, when ``m3`` (or ``sum_cube``) is given the skewness check
    runs. ``clamped_units`` counts units whose value hit the aggregation limit (a data-quality
    warning, see docs/statistics.md).
    """

    n: int
    sum: float = 0.0
    sum_sq: float = 0.0
    den_sum: float | None = None
    den_sum_sq: float | None = None
    cross_sum: float | None = None
    pre_sum: float | None = None
    pre_sum_sq: float | None = None
    pre_cross: float | None = None
    sum_cube: float | None = None
    m2: float | None = None
    m3: float | None = None
    clamped_units: int = 0
    # Ratio metrics with CUPED: the denominator before exposure (xp) and the cross products of
    # the pre-period numerator (yp, see ``pre_*``) and denominator with each other and with the
    # post-period numerator (y) and denominator (x).
    pre_den_sum: float | None = None  # sum xp
    pre_den_sum_sq: float | None = None  # sum xp^2
    pre_num_den: float | None = None  # sum yp xp
    pre_num_x_den: float | None = None  # sum yp x
    pre_den_x_num: float | None = None  # sum xp y
    pre_den_x_den: float | None = None  # sum xp x
    # Quantile metrics (``n`` = units with a value): the order statistics the SQL picked, at
    # ranks ceil(n q) (the estimate) and lower/upper_rank (the confidence interval's ends).
    quantile_value: float | None = None
    quantile_lower: float | None = None
    quantile_upper: float | None = None
    lower_rank: int | None = None
    upper_rank: int | None = None


@dataclass(frozen=True)
class MetricInput:
    """One metric of an experiment with its per-variant statistics."""

    key: str
    name: str
    kind: str
    role: str
    direction: str
    variants: dict[str, VariantStats]
    #: Guardrails only: the relative harm tolerated (0.02 = 2 %), judged by a one-sided
    #: non-inferiority test; None means DEFAULT_MARGIN.
    non_inferiority_margin: float | None = None
    #: Quantile metrics only: the level q in (0, 1), e.g. 0.9 for p90.
    quantile: float | None = None


def as_float(value: Any, field: str) -> float:
    """A finite float, or StatsInputError naming ``field`` (accepts Decimal, numpy, int)."""
    if value is None or isinstance(value, bool):
        raise StatsInputError(field, "must be a number")
    if not isinstance(value, Real):
        try:
            value = float(value)  # Decimal and friends
        except (TypeError, ValueError):
            raise StatsInputError(field, "must be a number") from None
    x = float(value)
    if not math.isfinite(x):
        raise StatsInputError(field, "must be a finite number")
    return x


def as_optional_float(value: Any, field: str) -> float | None:
    return None if value is None else as_float(value, field)


def as_count(value: Any, field: str) -> int:
    """A non-negative integer (integral floats are accepted)."""
    x = as_float(value, field)
    if x < 0 or x != math.floor(x):
        raise StatsInputError(field, "must be a non-negative integer")
    if x > MAX_COUNT:
        raise StatsInputError(field, f"must be at most {MAX_COUNT:.0e}")
    return int(x)


def as_probability(value: Any, field: str) -> float:
    x = as_float(value, field)
    if not 0.0 < x < 1.0:
        raise StatsInputError(field, "must be strictly between 0 and 1")
    return x


def as_choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise StatsInputError(field, f"must be one of {', '.join(choices)}")
    return str(value)


@dataclass(frozen=True)
class CleanStats:
    """Validated float view of VariantStats (internal)."""

    n: int
    s: float
    q: float
    den_s: float | None
    den_q: float | None
    cross: float | None
    pre_s: float | None
    pre_q: float | None
    pre_cross: float | None
    m2: float | None = None
    m3: float | None = None
    clamped: int = 0
    ratio_pre: tuple[float, ...] | None = None  # (xp, xp^2, yp xp, yp x, xp y, xp x) sums
    quantile: tuple[float | None, float | None, float | None, int | None, int | None] | None = None

    @property
    def has_pre(self) -> bool:
        return None not in (self.pre_s, self.pre_q, self.pre_cross)


EMPTY = CleanStats(0, 0.0, 0.0, None, None, None, None, None, None)


def clean_stats(vs: Any, kind: str, field: str) -> CleanStats:
    """Validate one VariantStats; raise StatsInputError for impossible sums."""
    if not isinstance(vs, VariantStats):
        raise StatsInputError(field, "must be a VariantStats")
    n = as_count(vs.n, f"{field}.n")
    s = as_float(vs.sum, f"{field}.sum")
    q = as_float(vs.sum_sq, f"{field}.sum_sq")
    den_s = as_optional_float(vs.den_sum, f"{field}.den_sum")
    den_q = as_optional_float(vs.den_sum_sq, f"{field}.den_sum_sq")
    cross = as_optional_float(vs.cross_sum, f"{field}.cross_sum")
    pre_s = as_optional_float(vs.pre_sum, f"{field}.pre_sum")
    pre_q = as_optional_float(vs.pre_sum_sq, f"{field}.pre_sum_sq")
    pre_x = as_optional_float(vs.pre_cross, f"{field}.pre_cross")
    if kind == "conversion":
        if s < 0 or s > n:
            raise StatsInputError(f"{field}.sum", "conversions must be between 0 and n")
        q = s  # a 0/1 value squared is itself
    elif q < 0:
        raise StatsInputError(f"{field}.sum_sq", "a sum of squares cannot be negative")
    if kind == "ratio" and n > 0 and None in (den_s, den_q, cross):
        raise StatsInputError(
            f"{field}.den_sum", "ratio metrics need den_sum, den_sum_sq and cross_sum"
        )
    if den_q is not None and den_q < 0:
        raise StatsInputError(f"{field}.den_sum_sq", "a sum of squares cannot be negative")
    if pre_q is not None and pre_q < 0:
        raise StatsInputError(f"{field}.pre_sum_sq", "a sum of squares cannot be negative")
    m2 = as_optional_float(vs.m2, f"{field}.m2")
    m3 = as_optional_float(vs.m3, f"{field}.m3")
    cube = as_optional_float(vs.sum_cube, f"{field}.sum_cube")
    clamped = as_count(vs.clamped_units, f"{field}.clamped_units")
    if m2 is not None and m2 < 0:
        raise StatsInputError(f"{field}.m2", "a sum of squared deviations cannot be negative")
    if kind in ("conversion", "ratio", "quantile"):
        m2 = m3 = None  # exact (conversion) or not used (ratio, quantile)
    elif m3 is None and cube is not None and n > 0:
        mean = s / n  # raw third central moment; rough when the mean dwarfs the spread
        m3 = cube - 3.0 * mean * q + 2.0 * n * mean * mean * mean
        if not math.isfinite(m3):
            m3 = None
    ratio_pre = None
    names = ("pre_den_sum", "pre_den_sum_sq", "pre_num_den", "pre_num_x_den", "pre_den_x_num", "pre_den_x_den")
    raw = [as_optional_float(getattr(vs, name), f"{field}.{name}") for name in names]
    if kind == "ratio" and None not in raw:
        if raw[1] < 0:  # type: ignore[operator]
            raise StatsInputError(f"{field}.pre_den_sum_sq", "a sum of squares cannot be negative")
        ratio_pre = tuple(raw)  # type: ignore[arg-type]
    quantile = None
    if kind == "quantile":
        value = as_optional_float(vs.quantile_value, f"{field}.quantile_value")
        lower = as_optional_float(vs.quantile_lower, f"{field}.quantile_lower")
        upper = as_optional_float(vs.quantile_upper, f"{field}.quantile_upper")
        lo_r = None if vs.lower_rank is None else as_count(vs.lower_rank, f"{field}.lower_rank")
        hi_r = None if vs.upper_rank is None else as_count(vs.upper_rank, f"{field}.upper_rank")
        if None not in (lower, upper, value) and not lower <= value <= upper:  # type: ignore[operator]
            raise StatsInputError(f"{field}.quantile_value", "must lie between quantile_lower and quantile_upper")
        if None not in (lo_r, hi_r) and not 1 <= lo_r <= hi_r <= max(n, 1):  # type: ignore[operator]
            raise StatsInputError(f"{field}.lower_rank", "ranks must satisfy 1 <= lower_rank <= upper_rank <= n")
        quantile = (value, lower, upper, lo_r, hi_r)
    return CleanStats(n, s, q, den_s, den_q, cross, pre_s, pre_q, pre_x, m2, m3, clamped, ratio_pre, quantile)
