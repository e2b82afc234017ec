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


def sample_var(n: int, s: float, q: float) -> float:
    """Unbiased sample variance (Q - S^2/n)/(n-1); exact zero for constant data."""
    if n < 2:
        return 0.0
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
    """Proportion p = conversions/n with unit variance p(1-p) (the z-test convention)."""
    few = _too_few(st)
    if few:
        return few
    if st.s <= 0:
        return Insufficient("no conversions yet in this variant")
    if st.s >= st.n:
        return Insufficient("every unit in this variant converted, so there is no variation yet")
    p = st.s / st.n
    return Estimate(st.n, p, p * (1.0 - p))


def mean_estimate(st: CleanStats) -> Estimate | Insufficient:
    """Mean S/n with the unbiased sample variance (count and sum metrics)."""
    few = _too_few(st)
    if few:
        return few
    v = sample_var(st.n, st.s, st.q)
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


def estimate(kind: str, st: CleanStats) -> Estimate | Insufficient:
    if kind == "conversion":
        return conversion_estimate(st)
    if kind == "ratio":
        return ratio_estimate(st)
    return mean_estimate(st)
