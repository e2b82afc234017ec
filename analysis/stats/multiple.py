"""Multiple-comparison adjustment of p-values (Holm; Benjamini-Hochberg)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import StatsInputError

CORRECTIONS = ("holm", "bh", "none")
_ALIASES = {
    "holm": "holm",
    "holm-bonferroni": "holm",
    "bh": "bh",
    "fdr_bh": "bh",
    "benjamini-hochberg": "bh",
    "benjamini_hochberg": "bh",
    "none": "none",
}


def normalise_correction(name: str) -> str:
    key = str(name).strip().lower() if isinstance(name, str) else None
    if key not in _ALIASES:
        raise StatsInputError("correction", "must be one of holm, bh, none")
    return _ALIASES[key]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down: p_adj(i) = max_{j<=i} min(1, (m - j + 1) p(j)) in ascending order."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="mergesort")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adj_sorted = np.maximum.accumulate(stepped)
    adj = np.empty(m)
    adj[order] = adj_sorted
    return adj.tolist()


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """BH step-up: p_adj(i) = min_{j>=i} min(1, m p(j) / j) in ascending order."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="mergesort")
    scaled = m * p[order] / np.arange(1, m + 1)
    adj_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    adj = np.empty(m)
    adj[order] = adj_sorted
    return adj.tolist()


def adjust(pvalues: Sequence[float], method: str) -> list[float]:
    """Adjusted p-values for one family; ``method`` is holm, bh or none."""
    method = normalise_correction(method)
    if method == "holm":
        return holm(pvalues)
    if method == "bh":
        return benjamini_hochberg(pvalues)
    return [float(min(1.0, max(0.0, p))) for p in pvalues]
