"""CUPED variance reduction from pre-period sufficient statistics (Deng et al. 2013).

Y_adj = Y - theta (X - mean X), with X the same metric before first exposure and theta the
pooled within-arm regression slope Cov(X, Y)/Var(X). Pooling *within* arms (i.e. the OLS
coefficient of X in ``Y ~ arm + X``) keeps the treatment effect out of theta. Because X is
measured before exposure it is independent of assignment, so the adjusted difference is
unbiased for the same effect and its variance shrinks by about (1 - rho^2).
"""

from __future__ import annotations

from dataclasses import dataclass

from .inputs import CleanStats
from .moments import Estimate, sample_cov, sample_var

_ZERO_VAR_RTOL = 1e-11


@dataclass(frozen=True)
class CupedFit:
    theta: float
    pre_mean: float  # mean of X over all arms (the centring point)
    estimates: dict[str, Estimate]  # adjusted per-arm estimates (unbiased sample variances)
    raw: dict[str, Estimate]  # unadjusted per-arm estimates with the same variance convention


def cuped_theta(stats: list[CleanStats]) -> float | None:
    """Pooled within-arm slope sum_i Sxy_i / sum_i Sxx_i; None if X does not vary."""
    sxy = 0.0
    sxx = 0.0
    scale = 0.0
    for st in stats:
        assert st.pre_s is not None and st.pre_q is not None and st.pre_cross is not None
        sxy += st.pre_cross - st.pre_s * st.s / st.n
        sxx += st.pre_q - st.pre_s * st.pre_s / st.n
        scale += st.pre_q
    if sxx <= _ZERO_VAR_RTOL * scale:
        return None
    return sxy / sxx


def fit_cuped(stats: dict[str, CleanStats]) -> CupedFit | str:
    """Adjusted estimates per arm, or a plain-words reason why CUPED is not applied."""
    live = {k: st for k, st in stats.items() if st.n >= 2}
    if len(live) < 2:
        return "not enough units"
    if not all(st.has_pre for st in live.values()):
        return "no pre-period data"
    theta = cuped_theta(list(live.values()))
    if theta is None:
        return "the pre-period metric does not vary between units"
    total_n = sum(st.n for st in live.values())
    pre_mean = sum(st.pre_s for st in live.values()) / total_n  # type: ignore[misc]
    adjusted: dict[str, Estimate] = {}
    raw: dict[str, Estimate] = {}
    for key, st in live.items():
        assert st.pre_s is not None and st.pre_q is not None and st.pre_cross is not None
        n = st.n
        vy = sample_var(n, st.s, st.q)
        vx = sample_var(n, st.pre_s, st.pre_q)
        cxy = sample_cov(n, st.pre_s, st.s, st.pre_cross)
        if vy <= 0:
            continue  # constant outcome: that arm is reported as insufficient anyway
        v_adj = vy - 2.0 * theta * cxy + theta * theta * vx
        if v_adj <= _ZERO_VAR_RTOL * (vy + theta * theta * vx):
            return "the pre-period metric explains the outcome exactly, leaving no variation"
        mean_adj = st.s / n - theta * (st.pre_s / n - pre_mean)
        adjusted[key] = Estimate(n, mean_adj, v_adj)
        raw[key] = Estimate(n, st.s / n, vy)
    return CupedFit(theta, pre_mean, adjusted, raw)


def variance_reduction(fit: CupedFit, treatment: str, control: str) -> float:
    """1 - Var(adjusted difference)/Var(unadjusted difference), same variance convention."""
    v_adj = fit.estimates[treatment].var_mean + fit.estimates[control].var_mean
    v_raw = fit.raw[treatment].var_mean + fit.raw[control].var_mean
    return 1.0 - v_adj / v_raw
