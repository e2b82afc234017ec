"""Always-valid inference: the mixture SPRT with a normal mixing prior (Johari et al. 2022).

For an asymptotically normal difference estimate d with variance V and a N(0, tau^2) mixing
prior on the effect, the mixture likelihood ratio against "effect = theta0" is

    Lambda(theta0) = sqrt(V / (V + tau^2)) * exp(tau^2 (d - theta0)^2 / (2 V (V + tau^2)))

Under the null it is a (asymptotic) martingale, so by Ville's inequality
P(sup_t Lambda_t >= 1/alpha) <= alpha: the p-value min(1, 1/Lambda(0)) and the confidence
sequence {theta0 : Lambda(theta0) < 1/alpha} stay valid however often one looks.

Tuning: tau^2 = u*(alpha) * V_plan, where V_plan is the variance of d at the planned sample size
and u*(alpha) minimises the confidence-sequence width at that size. Only the current statistics
are used (no running minimum over past looks), which is conservative.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize

# Horizon (units per variant) the mixing prior is tuned for when no planned size is given.
DEFAULT_HORIZON_PER_VARIANT = 10_000


@lru_cache(maxsize=64)
def optimal_mixing_ratio(alpha: float) -> float:
    """u = tau^2/V minimising the half-width factor (1+u)/u * (2 log(1/alpha) + log(1+u))."""

    def width2(log_u: float) -> float:
        u = np.exp(log_u)
        return (1.0 + u) / u * (2.0 * np.log(1.0 / alpha) + np.log1p(u))

    res = optimize.minimize_scalar(width2, bounds=(-5.0, 10.0), method="bounded")
    return float(np.exp(res.x))


def mixing_variance(alpha: float, var_at_plan: ArrayLike) -> np.ndarray:
    """tau^2 for a horizon whose difference estimate has variance ``var_at_plan``."""
    return optimal_mixing_ratio(alpha) * np.asarray(var_at_plan, dtype=float)


def msprt_pvalue(diff: ArrayLike, var: ArrayLike, tau2: ArrayLike) -> np.ndarray:
    """Always-valid p-value min(1, 1/Lambda(0)), computed in log space.

    With z^2 = d^2/V and u = tau^2/V: log Lambda = -log(1+u)/2 + z^2 u / (2 (1+u)).
    """
    d = np.asarray(diff, dtype=float)
    v = np.asarray(var, dtype=float)
    u = np.asarray(tau2, dtype=float) / v
    log_lr = -0.5 * np.log1p(u) + (d * d / v) * u / (2.0 * (1.0 + u))
    return np.exp(-np.maximum(log_lr, 0.0))


def msprt_halfwidth(var: ArrayLike, tau2: ArrayLike, alpha: float) -> np.ndarray:
    """Half-width of the always-valid (1 - alpha) confidence sequence around the estimate.

    sqrt(V (V + tau^2)/tau^2 * (2 log(1/alpha) + log((V + tau^2)/V))), with u = tau^2/V.
    """
    v = np.asarray(var, dtype=float)
    u = np.asarray(tau2, dtype=float) / v
    return np.sqrt(v * (1.0 + u) / u * (2.0 * np.log(1.0 / alpha) + np.log1p(u)))


def always_valid(
    diff: ArrayLike, var: ArrayLike, var_at_plan: ArrayLike, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """(always-valid p-value, confidence-sequence half-width) for a difference estimate.

    ``var`` is the variance of the estimate now, ``var_at_plan`` its variance at the horizon the
    mixing prior is tuned for (same per-unit variances, planned sizes).
    """
    tau2 = mixing_variance(alpha, var_at_plan)
    return msprt_pvalue(diff, var, tau2), msprt_halfwidth(var, tau2, alpha)
