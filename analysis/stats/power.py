"""Power and planning: sample size before the test, MDE / power reached during it.

Conventions: two-sided tests; the MDE is relative to the baseline by default
(``relative=True``: 0.05 means +5 %); with more than two variants alpha is split
Bonferroni-style over the n_variants - 1 treatment-vs-control comparisons (Holm's first step),
so the plan matches the Holm-adjusted analysis.
"""

from __future__ import annotations

import math
import warnings
from numbers import Real
from typing import Any

from scipy import special
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from .errors import StatsInputError
from .inputs import as_float, as_probability

MAX_UNITS_PER_VARIANT = 10**12


def _n_variants(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise StatsInputError("n_variants", "must be an integer")
    x = float(value)
    if not math.isfinite(x) or x != math.floor(x):
        raise StatsInputError("n_variants", "must be an integer")
    k = int(x)
    if not 2 <= k <= 1000:
        raise StatsInputError("n_variants", "must be between 2 and 1000")
    return k


def _z(p: float) -> float:
    return float(special.ndtri(p))


def sample_size(
    baseline: float,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    relative: bool = True,
    sd: float | None = None,
    n_variants: int = 2,
) -> dict[str, Any]:
    """Units per variant (and in total) to detect ``mde`` with the given power.

    Conversion metrics when ``sd`` is None (``baseline`` is a rate in (0, 1); Cohen's h via
    statsmodels ``proportion_effectsize``); mean metrics when ``sd`` (per-unit standard deviation)
    is given (effect size = absolute MDE / sd). Sized with statsmodels ``NormalIndPower``, equal
    allocation. Raises StatsInputError naming the offending field.
    """
    base = as_float(baseline, "baseline")
    effect = as_float(mde, "mde")
    alpha = as_probability(alpha, "alpha")
    power = as_probability(power, "power")
    if not isinstance(relative, bool):
        raise StatsInputError("relative", "must be true or false")
    k = _n_variants(n_variants)
    if power <= alpha:
        raise StatsInputError("power", "must be greater than alpha")
    if effect == 0:
        raise StatsInputError("mde", "must not be zero")
    alpha_cmp = alpha / (k - 1)

    if sd is None:
        if not 0.0 < base < 1.0:
            raise StatsInputError("baseline", "a conversion rate must be strictly between 0 and 1")
        target = base * (1.0 + effect) if relative else base + effect
        if not 0.0 < target < 1.0:
            raise StatsInputError(
                "mde", "the target conversion rate must stay strictly between 0 and 1"
            )
        es = abs(float(proportion_effectsize(target, base)))
        metric_type = "conversion"
        sd_out = None
    else:
        sd_val = as_float(sd, "sd")
        if sd_val <= 0:
            raise StatsInputError("sd", "must be positive")
        if relative and base == 0:
            raise StatsInputError("baseline", "must not be zero for a relative MDE")
        target = base * (1.0 + effect) if relative else base + effect
        es = abs(target - base) / sd_val
        metric_type = "mean"
        sd_out = sd_val

    ratio = (_z(1.0 - alpha_cmp / 2.0) + _z(power)) / es if es > 0 else math.inf
    approx = ratio * ratio
    if not math.isfinite(approx) or approx > MAX_UNITS_PER_VARIANT:
        raise StatsInputError("mde", "is too small to detect with any practical sample size")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            n = float(
                NormalIndPower().solve_power(
                    effect_size=es,
                    nobs1=None,
                    alpha=alpha_cmp,
                    power=power,
                    ratio=1.0,
                    alternative="two-sided",
                )
            )
        except Exception:  # pragma: no cover - statsmodels root-finding failure
            n = math.nan
    if not math.isfinite(n) or n <= 0:  # pragma: no cover
        n = approx
    per_variant = max(2, math.ceil(n - 1e-9))
    return {
        "per_variant": per_variant,
        "total": per_variant * k,
        "n_variants": k,
        "metric_type": metric_type,
        "baseline": base,
        "target": target,
        "mde": effect,
        "relative": relative,
        "mde_absolute": target - base,
        "mde_relative": (target - base) / base if base != 0 else None,
        "sd": sd_out,
        "alpha": alpha,
        "alpha_per_comparison": alpha_cmp,
        "power": power,
        "effect_size": es,
        "method": (
            "two-sided normal test, equal allocation, statsmodels NormalIndPower; "
            + ("Cohen's h effect size" if metric_type == "conversion" else "effect size = MDE / sd")
            + ("; alpha split over treatment-vs-control comparisons (Bonferroni)" if k > 2 else "")
        ),
    }


def mde_at(se: float, alpha: float, power: float) -> float:
    """Smallest absolute effect detectable with ``power`` when the difference has std error se.

    Uses (z_{1-alpha/2} + z_power) * se, ignoring the negligible opposite tail.
    """
    return (_z(1.0 - alpha / 2.0) + _z(power)) * se


def power_at(effect: float, se: float, alpha: float) -> float:
    """Two-sided power of a z-test to detect ``effect`` when the difference has std error se."""
    za = _z(1.0 - alpha / 2.0)
    x = abs(effect) / se
    return float(special.ndtr(x - za) + special.ndtr(-x - za))
