"""Shared helpers for the statistics tests (no Django, no database)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from analysis.stats import MetricInput, VariantStats


def suff(y: np.ndarray, x: np.ndarray | None = None, pre: np.ndarray | None = None) -> VariantStats:
    """Sufficient statistics of raw per-unit data, as the SQL aggregation would produce."""
    y = np.asarray(y, dtype=float)
    kw: dict[str, Any] = {"n": int(y.size), "sum": float(y.sum()), "sum_sq": float((y * y).sum())}
    if x is not None:
        x = np.asarray(x, dtype=float)
        kw.update(
            den_sum=float(x.sum()), den_sum_sq=float((x * x).sum()), cross_sum=float((x * y).sum())
        )
    if pre is not None:
        pre = np.asarray(pre, dtype=float)
        kw.update(
            pre_sum=float(pre.sum()),
            pre_sum_sq=float((pre * pre).sum()),
            pre_cross=float((pre * y).sum()),
        )
    return VariantStats(**kw)


def metric(
    key: str,
    kind: str,
    variants: dict[str, VariantStats],
    role: str = "primary",
    direction: str = "increase",
    name: str | None = None,
    margin: float | None = None,
) -> MetricInput:
    return MetricInput(
        key=key,
        name=name or key.title(),
        kind=kind,
        role=role,
        direction=direction,
        variants=variants,
        non_inferiority_margin=margin,
    )


def conv(n: int, c: int) -> VariantStats:
    return VariantStats(n=n, sum=float(c), sum_sq=float(c))


def assert_json_safe(body: Any) -> None:
    """Strict JSON, and no float anywhere is NaN or infinite."""
    json.dumps(body, allow_nan=False)

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                assert isinstance(k, str)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        else:
            assert v is None or type(v) in (bool, int, float, str), type(v)
            if isinstance(v, float):
                assert math.isfinite(v)

    walk(body)


def treatment(body: dict, metric_key: str, variant: str) -> dict:
    m = next(m for m in body["metrics"] if m["metric"] == metric_key)
    return next(v for v in m["variants"] if v["variant"] == variant)
