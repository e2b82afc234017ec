"""Fixed-horizon frequentist tests on summary statistics.

The formulas accept numpy arrays as well as floats so simulations can run them vectorised;
edge cases (n < 2, zero variance) are screened out by the caller before they get here.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

ALTERNATIVES = ("two-sided", "larger", "smaller")


def welch_df(var1: ArrayLike, n1: ArrayLike, var0: ArrayLike, n0: ArrayLike) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom from unit variances and sizes.

    (a + b)^2 / (a^2/(n1-1) + b^2/(n0-1)) with a = var1/n1, b = var0/n0, written with the
    shares a/(a+b) so that tiny or huge variances neither underflow nor overflow.
    """
    a = np.asarray(var1, dtype=float) / n1
    b = np.asarray(var0, dtype=float) / n0
    fa = a / (a + b)
    fb = b / (a + b)
    return 1.0 / (
        fa * fa / (np.asarray(n1, dtype=float) - 1) + fb * fb / (np.asarray(n0, dtype=float) - 1)
    )


def t_pvalue(t: ArrayLike, df: ArrayLike, alternative: str = "two-sided") -> np.ndarray:
    t = np.asarray(t, dtype=float)
    if alternative == "two-sided":
        return 2.0 * special.stdtr(df, -np.abs(t))
    if alternative == "larger":
        return special.stdtr(df, -t)
    if alternative == "smaller":
        return special.stdtr(df, t)
    raise ValueError(f"alternative must be one of {ALTERNATIVES}")


def z_pvalue(z: ArrayLike, alternative: str = "two-sided") -> np.ndarray:
    z = np.asarray(z, dtype=float)
    if alternative == "two-sided":
        return 2.0 * special.ndtr(-np.abs(z))
    if alternative == "larger":
        return special.ndtr(-z)
    if alternative == "smaller":
        return special.ndtr(z)
    raise ValueError(f"alternative must be one of {ALTERNATIVES}")


def t_critical(alpha: float, df: ArrayLike) -> np.ndarray:
    """Two-sided critical value t_{df, 1 - alpha/2}."""
    return special.stdtrit(df, 1.0 - alpha / 2.0)


def z_critical(alpha: float) -> float:
    """Two-sided critical value z_{1 - alpha/2}."""
    return float(special.ndtri(1.0 - alpha / 2.0))


def welch_ttest(
    mean1: ArrayLike,
    var1: ArrayLike,
    n1: ArrayLike,
    mean0: ArrayLike,
    var0: ArrayLike,
    n0: ArrayLike,
    alternative: str = "two-sided",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's unequal-variance t-test of mean1 - mean0: returns (t, df, p).

    ``var`` are unit (sample) variances; matches scipy.stats.ttest_ind_from_stats(equal_var=False)
    given standard deviations sqrt(var).
    """
    se = np.sqrt(np.asarray(var1, dtype=float) / n1 + np.asarray(var0, dtype=float) / n0)
    t = (np.asarray(mean1, dtype=float) - mean0) / se
    df = welch_df(var1, n1, var0, n0)
    return t, df, t_pvalue(t, df, alternative)


def proportions_ztest_pooled(
    count1: ArrayLike,
    n1: ArrayLike,
    count0: ArrayLike,
    n0: ArrayLike,
    alternative: str = "two-sided",
) -> tuple[np.ndarray, np.ndarray]:
    """Two-proportion z-test with the pooled (null) variance: returns (z, p).

    Same as statsmodels ``proportions_ztest([c1, c0], [n1, n0])``.
    """
    c1 = np.asarray(count1, dtype=float)
    c0 = np.asarray(count0, dtype=float)
    n1 = np.asarray(n1, dtype=float)
    n0 = np.asarray(n0, dtype=float)
    pooled = (c1 + c0) / (n1 + n0)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n0))
    z = (c1 / n1 - c0 / n0) / se
    return z, z_pvalue(z, alternative)


def relative_lift(
    mean1: ArrayLike, var_mean1: ArrayLike, mean0: ArrayLike, var_mean0: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Relative lift r = m1/m0 - 1 and its delta-method standard error.

    Var(r) ~ Var(m1)/m0^2 + Var(m0) m1^2/m0^4 (independent arms), i.e.
    s1^2/(n1 m0^2) + s0^2 m1^2/(n0 m0^4).
    """
    m1 = np.asarray(mean1, dtype=float)
    m0 = np.asarray(mean0, dtype=float)
    ratio = m1 / m0
    var = (
        np.asarray(var_mean1, dtype=float) + np.asarray(var_mean0, dtype=float) * ratio**2
    ) / m0**2
    r = ratio - 1.0
    return r, np.sqrt(var)


# Any cell of the 2x2 table (conversions or non-conversions of either arm) below this count
# switches the comparison of two proportions from the z-test to Fisher's exact test.
EXACT_MIN_CELL = 10


def needs_exact(count1: float, n1: int, count0: float, n0: int) -> bool:
    """True when a 2x2 cell is below EXACT_MIN_CELL (the z-test is unreliable there)."""
    cells = (count1, n1 - count1, count0, n0 - count0)
    return min(cells) < EXACT_MIN_CELL


def fisher_exact_pvalue(count1: float, n1: int, count0: float, n0: int) -> float:
    """Two-sided p-value of Fisher's exact test of the 2x2 table (scipy.stats.fisher_exact).

    Fisher's test conditions on both margins and is exact (conservative) for any counts,
    including a zero cell (0/2,000 against 15/2,000), where the z-test has no variance to use.
    """
    from scipy.stats import fisher_exact

    c1, c0 = round(count1), round(count0)
    table = [[c1, int(n1) - c1], [c0, int(n0) - c0]]
    return float(fisher_exact(table, alternative="two-sided").pvalue)
