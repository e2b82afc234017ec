"""Sample ratio mismatch (SRM) check (Kohavi et al. 2020, ch. 21; Fabijan et al. 2019).

Chi-square goodness of fit of the exposure counts against n_total x configured weights, k - 1
degrees of freedom. A mismatch means assignment or logging is broken, so the comparison is
biased in unknown ways: p < 0.001 flags the whole report as untrustworthy.
"""

from __future__ import annotations

from typing import Any

from scipy import special

from .errors import StatsInputError
from .inputs import as_count, as_float

SRM_THRESHOLD = 0.001


def _weights(weights: Any) -> dict[str, float]:
    if not isinstance(weights, dict) or not weights:
        raise StatsInputError("weights", "must be a non-empty mapping of variant to weight")
    clean = {str(k): as_float(v, f"weights.{k}") for k, v in weights.items()}
    if any(v < 0 for v in clean.values()):
        raise StatsInputError("weights", "weights cannot be negative")
    if sum(clean.values()) <= 0:
        raise StatsInputError("weights", "at least one weight must be positive")
    return clean


def _share(counts: dict[str, int], total: int) -> str:
    return ", ".join(f"{k} {v:,} ({v / total:.1%})" for k, v in counts.items())


def srm_check(
    counts: dict[str, int], weights: dict[str, float], threshold: float = SRM_THRESHOLD
) -> dict:
    """Chi-square goodness-of-fit of ``counts`` against ``weights`` (normalised).

    Returns ``{"p_value", "passed", "counts", "expected", "chi2", "df", "threshold",
    "message"}``; JSON-safe. Variants with weight 0 are expected to get nobody: any unit in
    such a variant (or in a variant missing from ``weights``) fails the check outright.
    """
    w = _weights(weights)
    if not isinstance(counts, dict):
        raise StatsInputError("exposure_counts", "must be a mapping of variant to count")
    threshold = as_float(threshold, "threshold")
    obs = {k: 0 for k in w}
    for k, v in counts.items():
        obs[str(k)] = as_count(v, f"exposure_counts.{k}")
    total = sum(obs.values())
    wsum = sum(w.values())
    expected = {k: total * w.get(k, 0.0) / wsum for k in obs}
    base = {
        "counts": obs,
        "expected": expected,
        "threshold": threshold,
        "test": "chi-square goodness of fit",
    }
    if total == 0:
        return {
            **base,
            "p_value": None,
            "chi2": None,
            "df": None,
            "passed": True,
            "checked": False,
            "message": "No exposures yet, so the traffic split cannot be checked.",
        }
    stray = [k for k in obs if expected[k] == 0 and obs[k] > 0]
    if stray:
        return {
            **base,
            "p_value": 0.0,
            "chi2": None,
            "df": None,
            "passed": False,
            "checked": True,
            "message": (
                f"Units reached variant(s) {', '.join(stray)} that should get no traffic. "
                "Assignment or logging is broken, so these results can't be trusted."
            ),
        }
    cells = [k for k in obs if expected[k] > 0]
    chi2 = sum((obs[k] - expected[k]) * (obs[k] - expected[k]) / expected[k] for k in cells)
    df = len(cells) - 1
    p = float(special.chdtrc(df, chi2)) if df > 0 else 1.0
    passed = p >= threshold
    expected_share = ", ".join(f"{k} {w[k] / wsum:.1%}" for k in cells)
    if passed:
        message = f"The traffic split matches the configured weights (p = {p:.3g})."
    else:
        message = (
            f"Sample ratio mismatch: the split was {_share(obs, total)} but the configuration "
            f"asks for {expected_share} (p = {p:.2g}). This usually means assignment or logging "
            "is broken, so these results can't be trusted until the cause is fixed."
        )
    return {
        **base,
        "p_value": p,
        "chi2": chi2,
        "df": df,
        "passed": passed,
        "checked": True,
        "message": message,
    }
