"""Per-variant point estimates and variances from sufficient statistics.

Every metric kind is reduced to the same shape, an :class:`Estimate` (n, mean, variance of
one unit's linearised value), so one set of tests serves all kinds: the variance of the
estimate is ``unit_var / n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .inputs import CleanStats

# Relative tolerance below which a computed variance is floating-point noise, not signal.
_ZERO_VAR_RTOL = 1e-11
# With centred sums (m2) the rounding noise is far smaller: data count as constant only when
# the sd is below 1e-12 of the values' root mean square.
_ZERO_SD_RTOL_CENTRED = 1e-12
# Kohavi et al.: the normal approximation of a mean is good enough when n > 355 * skewness^2.
SKEW_FACTOR = 355


@dataclass(frozen=True)
class Estimate:
    """Point estimate of a variant's metric and the variance of one unit's contribution."""

    n: int
    mean: float
    unit_var: float

    @property
    def var_mean(self) -> float:
        return self.unit_var / self.n

    @property
    def sd(self) -> float:
        return math.sqrt(self.unit_var)


@dataclass(frozen=True)
class Insufficient:
    """Why a variant cannot be analysed yet (plain words)."""

    reason: str


def sample_var(n: int, s: float, q: float, m2: float | None = None) -> float:
    """Unbiased sample variance; exact zero for constant data.

    With the centred sum of squares ``m2`` (computed from shifted sums) it is m2/(n-1), which
    keeps tiny spreads around large means; without, (Q - S^2/n)/(n-1), which loses them to
    cancellation (the tolerance then treats anything below the rounding noise as zero).
    """
    if n < 2:
        return 0.0
    if m2 is not None:
        v = m2 / (n - 1)
        rms2 = q / n if q > 0 else 0.0
        return 0.0 if v <= (_ZERO_SD_RTOL_CENTRED**2) * rms2 else v
    v = (q - s * s / n) / (n - 1)
    if v <= _ZERO_VAR_RTOL * abs(q) / (n - 1):
        return 0.0
    return v


def sample_cov(n: int, sx: float, sy: float, sxy: float) -> float:
    """Unbiased sample covariance (Sxy - Sx Sy / n)/(n-1)."""
    if n < 2:
        return 0.0
    return (sxy - sx * sy / n) / (n - 1)


def _too_few(st: CleanStats) -> Insufficient | None:
    if st.n == 0:
        return Insufficient("no units in this variant yet")
    if st.n < 2:
        return Insufficient("only one unit in this variant; at least two are needed")
    return None


def conversion_estimate(st: CleanStats) -> Estimate | Insufficient:
    """Proportion p = conversions/n with unit variance p(1-p) (the z-test convention).

    0 or n conversions give a zero variance, not a refusal: the comparison with the other arm
    can still be made (by an exact test, see report.py) as long as one of the two varies.
    """
    few = _too_few(st)
    if few:
        return few
    p = st.s / st.n
    return Estimate(st.n, p, p * (1.0 - p))


def mean_estimate(st: CleanStats) -> Estimate | Insufficient:
    """Mean S/n with the unbiased sample variance (count and sum metrics)."""
    few = _too_few(st)
    if few:
        return few
    v = sample_var(st.n, st.s, st.q, st.m2)
    if v <= 0:
        return Insufficient(
            "every unit in this variant has the same value, so there is no variation yet"
        )
    return Estimate(st.n, st.s / st.n, v)


def ratio_estimate(st: CleanStats) -> Estimate | Insufficient:
    """Ratio R = Ybar/Xbar with delta-method variance.

    Var(R) ~ (Var(Y) - 2 R Cov(X,Y) + R^2 Var(X)) / (n Xbar^2); the returned unit variance is
    the numerator over Xbar^2, so ``var_mean`` is Var(R).
    """
    few = _too_few(st)
    if few:
        return few
    assert st.den_s is not None and st.den_q is not None and st.cross is not None
    if st.den_s == 0:
        return Insufficient("the denominator is still zero in this variant (e.g. no orders yet)")
    n = st.n
    xbar = st.den_s / n
    r = st.s / st.den_s
    vy = sample_var(n, st.s, st.q)
    vx = sample_var(n, st.den_s, st.den_q)
    cxy = sample_cov(n, st.den_s, st.s, st.cross)
    num = vy - 2.0 * r * cxy + r * r * vx
    if num <= _ZERO_VAR_RTOL * (vy + r * r * vx):
        return Insufficient(
            "every unit in this variant has the same ratio, so there is no variation yet"
        )
    return Estimate(n, r, num / (xbar * xbar))


def skewness(st: CleanStats) -> float | None:
    """Sample skewness g1 = (m3/n) / (m2/n)^1.5 from centred sums, or None when unknown."""
    if st.m3 is None or st.n < 3:
        return None
    m2 = st.m2 if st.m2 is not None else st.q - st.s * st.s / st.n
    var = sample_var(st.n, st.s, st.q, st.m2)
    if m2 <= 0 or var <= 0:
        return None
    g1 = (st.m3 / st.n) / (m2 / st.n) ** 1.5
    return g1 if math.isfinite(g1) else None


def skew_needs(st: CleanStats) -> tuple[float, int] | None:
    """(skewness, units needed) when n < 355 * skewness^2 (the normal approximation is doubtful)."""
    g1 = skewness(st)
    if g1 is None:
        return None
    needed = SKEW_FACTOR * g1 * g1
    if st.n >= needed:
        return None
    return g1, int(math.ceil(min(needed, 1e15)))


def estimate(kind: str, st: CleanStats) -> Estimate | Insufficient:
    if kind == "conversion":
        return conversion_estimate(st)
    if kind == "ratio":
        return ratio_estimate(st)
    return mean_estimate(st)
