"""Bayesian summaries: chance to beat control, expected loss, credible interval of the lift.

Two models, both deterministic (no random draws):

* conversions (unadjusted): beta-binomial with a Beta(1, 1) (uniform) prior per arm, posteriors
  Beta(1 + conversions, 1 + non-conversions). Probabilities are one-dimensional integrals
  computed by Gauss-Legendre quadrature over the *narrower* posterior (the other posterior
  enters through its exact CDF, so the integrand stays smooth even for very unequal arms).
* means, ratios and CUPED-adjusted metrics: flat prior, so each arm's mean is a posterior
  N(estimate, variance of the estimate) (normal approximation). Chance to beat and expected
  loss are closed form; the relative-lift interval solves P(M1 <= k M0) = q exactly for
  the two normals (Fieller's construction).

``chance_to_beat_control`` is P(treatment better than control in the desired direction);
``expected_loss`` is E[max(0, how much worse treatment is)] in metric units: what shipping the
treatment costs on average in the scenarios where it is in fact worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import optimize, special

_GL_X, _GL_W = np.polynomial.legendre.leggauss(128)
_TAIL = 1e-12


@dataclass(frozen=True)
class BayesResult:
    chance_to_beat: float
    expected_loss: float
    ci_relative: tuple[float, float] | None
    model: str
    prior: str


# ---------------------------------------------------------------------------- beta-binomial


class _Beta:
    def __init__(self, a: float, b: float) -> None:
        self.a = a
        self.b = b
        self.mean = a / (a + b)
        self.var = a * b / ((a + b) * (a + b) * (a + b + 1.0))

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return special.betainc(self.a, self.b, np.clip(x, 0.0, 1.0))

    def sf(self, x: np.ndarray) -> np.ndarray:
        return special.betaincc(self.a, self.b, np.clip(x, 0.0, 1.0))

    @cached_property
    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature nodes over the central 1 - 2e-12 of the posterior and pdf-weights."""
        lo = float(special.betaincinv(self.a, self.b, _TAIL))
        hi = float(special.betaincinv(self.a, self.b, 1.0 - _TAIL))
        x = lo + (hi - lo) * (_GL_X + 1.0) / 2.0
        logpdf = (
            (self.a - 1.0) * np.log(x)
            + (self.b - 1.0) * np.log1p(-x)
            - special.betaln(self.a, self.b)
        )
        w = _GL_W * (hi - lo) / 2.0 * np.exp(logpdf)
        return x, w / w.sum()


def _prob_greater(p1: _Beta, p0: _Beta) -> float:
    """P(p1 > p0)."""
    if p1.var <= p0.var:
        y, w = p1.nodes
        return float(np.dot(w, p0.cdf(y)))
    x, w = p0.nodes
    return float(np.dot(w, p1.sf(x)))


def _expected_shortfall(hi: _Beta, lo: _Beta) -> float:
    """E[max(0, hi - lo)] for independent betas, via E[X 1{X>y}] = mean_X * P*(X>y)."""
    if lo.var <= hi.var:
        y, w = lo.nodes
        hi_shift = _Beta(hi.a + 1.0, hi.b)
        inner = hi.mean * hi_shift.sf(y) - y * hi.sf(y)
    else:
        y, w = hi.nodes
        lo_shift = _Beta(lo.a + 1.0, lo.b)
        inner = y * lo.cdf(y) - lo.mean * lo_shift.cdf(y)
    return float(max(np.dot(w, inner), 0.0))


def _ratio_cdf(k: float, p1: _Beta, p0: _Beta) -> float:
    """P(p1 / p0 <= k) for k > 0."""
    if p1.var <= p0.var:
        y, w = p1.nodes
        return float(np.dot(w, p0.sf(y / k)))
    x, w = p0.nodes
    return float(np.dot(w, p1.cdf(k * x)))


def _ratio_quantile(q: float, p1: _Beta, p0: _Beta) -> float:
    """Solve P(p1/p0 <= k) = q on the log scale, bracketing from the log-normal approximation."""
    mu = math.log(p1.mean / p0.mean)
    sd = math.sqrt(p1.var / (p1.mean * p1.mean) + p0.var / (p0.mean * p0.mean))
    guess = mu + float(special.ndtri(q)) * sd
    f = lambda log_k: _ratio_cdf(math.exp(log_k), p1, p0) - q  # noqa: E731
    lo, hi, step = guess - 0.5 * sd, guess + 0.5 * sd, sd
    for _ in range(60):
        if f(lo) < 0:
            break
        lo -= step
        step *= 2.0
    step = sd
    for _ in range(60):
        if f(hi) > 0:
            break
        hi += step
        step *= 2.0
    return math.exp(optimize.brentq(f, lo, hi, xtol=1e-7 * sd, rtol=1e-12))


def beta_binomial(
    conversions1: float, n1: int, conversions0: float, n0: int, *, increase: bool, alpha: float
) -> BayesResult:
    """Posterior summaries for two conversion rates with Beta(1, 1) priors."""
    p1 = _Beta(1.0 + conversions1, 1.0 + n1 - conversions1)
    p0 = _Beta(1.0 + conversions0, 1.0 + n0 - conversions0)
    p_greater = _prob_greater(p1, p0)
    if increase:
        chance, loss = p_greater, _expected_shortfall(p0, p1)
    else:
        chance, loss = 1.0 - p_greater, _expected_shortfall(p1, p0)
    ci = (
        _ratio_quantile(alpha / 2.0, p1, p0) - 1.0,
        _ratio_quantile(1.0 - alpha / 2.0, p1, p0) - 1.0,
    )
    return BayesResult(min(max(chance, 0.0), 1.0), loss, ci, "beta_binomial", "Beta(1, 1)")


# ---------------------------------------------------------------------------- normal


def normal_ratio_interval(
    m1: float, v1: float, m0: float, v0: float, alpha: float
) -> tuple[float, float] | None:
    """Equal-tailed interval of M1/M0 for independent M_i ~ N(m_i, v_i) (Fieller).

    None when the control mean is not clearly away from zero (the ratio is then unbounded).
    """
    if m0 < 0:  # M1/M0 = (-M1)/(-M0)
        m1, m0 = -m1, -m0
    z = float(special.ndtri(1.0 - alpha / 2.0))
    a = m0 * m0 - z * z * v0
    if m0 <= 0 or a <= 0:
        return None
    b = -2.0 * m0 * m1
    c = m1 * m1 - z * z * v1
    disc = b * b - 4.0 * a * c
    if disc < 0:
        return None
    root = math.sqrt(disc)
    # Stable quadratic roots.
    qv = -0.5 * (b + math.copysign(root, b)) if b != 0 else -0.5 * root
    r1 = qv / a
    r2 = c / qv if qv != 0 else -r1
    return (min(r1, r2), max(r1, r2))


def normal_model(
    m1: float, v1: float, m0: float, v0: float, *, increase: bool, alpha: float
) -> BayesResult:
    """Flat-prior normal posteriors; v_i are variances of the estimated means."""
    d = m1 - m0
    s = math.sqrt(v1 + v0)
    z = d / s
    if increase:
        chance = float(special.ndtr(z))
        loss = s * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) - d * float(special.ndtr(-z))
    else:
        chance = float(special.ndtr(-z))
        loss = s * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) + d * float(special.ndtr(z))
    ratio = normal_ratio_interval(m1, v1, m0, v0, alpha)
    ci = None if ratio is None else (ratio[0] - 1.0, ratio[1] - 1.0)
    return BayesResult(chance, max(loss, 0.0), ci, "normal", "flat (improper uniform)")
