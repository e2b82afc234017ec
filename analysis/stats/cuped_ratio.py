"""CUPED for ratio metrics: regression adjustment of a ratio by its own pre-period ratio.

A ratio metric's estimate is R = Ybar / Xbar (e.g. revenue per order), not a mean of unit
values, so plain CUPED does not apply. Deng, Xu, Kohavi and Walker (WSDM 2013, section 3.4 and
the delta-method appendix) adjust it by a control variate that is itself a ratio: the same
metric before exposure, Rp = Ypbar / Xpbar (pre-period numerator and denominator of each unit):

    R_adj = R - theta (Rp - Rp_pooled)

By the delta method both ratios are, to first order, means of linearised unit values

    a_i = (Y_i - R X_i) / Xbar        b_i = (Yp_i - Rp Xp_i) / Xpbar

so Var(R) ~ Var(a)/n, Cov(R, Rp) ~ Cov(a, b)/n and theta = Cov(a, b)/Var(b), pooled within the
arms (sum over arms of (n_k - 1) Cov_k / sum of (n_k - 1) Var_k: the OLS slope of a on b with one
intercept per arm, so the treatment effect stays out of theta). The centring point Rp_pooled is
common to all arms and cancels in the difference; since the pre-period is untouched by the
treatment, E[Rp] is the same in every arm and the adjusted difference stays unbiased, with
variance (Var(a) - 2 theta Cov(a, b) + theta^2 Var(b)) / n per arm, i.e. shrunk by about
(1 - rho(a, b)^2).

Everything comes from sums over units of Y, X, Yp, Xp, their squares and cross products
(``VariantStats.pre_*``), aggregated in SQL.
"""

from __future__ import annotations

from .cuped import CupedFit
from .inputs import CleanStats
from .moments import Estimate, sample_cov, sample_var

_ZERO_VAR_RTOL = 1e-11


def _linearised(st: CleanStats) -> tuple[float, float, float, float, float] | None:
    """(R, Rp, Var(a), Var(b), Cov(a, b)) of one arm, or None when a ratio is undefined."""
    assert st.den_s is not None and st.den_q is not None and st.cross is not None
    assert st.pre_s is not None and st.pre_q is not None and st.pre_cross is not None
    assert st.ratio_pre is not None
    xp_s, xp_q, ypxp, yp_x, xp_y, xp_x = st.ratio_pre
    n = st.n
    if st.den_s == 0 or xp_s == 0:
        return None
    r, rp = st.s / st.den_s, st.pre_s / xp_s
    xbar, xpbar = st.den_s / n, xp_s / n
    vy, vx, cxy = sample_var(n, st.s, st.q), sample_var(n, st.den_s, st.den_q), sample_cov(n, st.den_s, st.s, st.cross)
    vyp, vxp, cpp = sample_var(n, st.pre_s, st.pre_q), sample_var(n, xp_s, xp_q), sample_cov(n, st.pre_s, xp_s, ypxp)
    c_y_yp = sample_cov(n, st.s, st.pre_s, st.pre_cross)
    c_y_xp = sample_cov(n, st.s, xp_s, xp_y)
    c_x_yp = sample_cov(n, st.den_s, st.pre_s, yp_x)
    c_x_xp = sample_cov(n, st.den_s, xp_s, xp_x)
    var_a = (vy - 2.0 * r * cxy + r * r * vx) / (xbar * xbar)
    var_b = (vyp - 2.0 * rp * cpp + rp * rp * vxp) / (xpbar * xpbar)
    cov_ab = (c_y_yp - rp * c_y_xp - r * c_x_yp + r * rp * c_x_xp) / (xbar * xpbar)
    return r, rp, var_a, var_b, cov_ab


def fit_cuped_ratio(stats: dict[str, CleanStats]) -> CupedFit | str:
    """Adjusted ratio estimates per arm, or a plain-words reason why CUPED is not applied."""
    live = {k: st for k, st in stats.items() if st.n >= 2}
    if len(live) < 2:
        return "not enough units"
    if not all(st.has_pre and st.ratio_pre is not None for st in live.values()):
        return "no pre-period data"
    parts = {}
    for key, st in live.items():
        lin = _linearised(st)
        if lin is None:
            return "the pre-period denominator is zero in a variant (e.g. no orders before exposure)"
        parts[key] = lin
    sxy = sum((live[k].n - 1) * p[4] for k, p in parts.items())
    sxx = sum((live[k].n - 1) * p[3] for k, p in parts.items())
    scale = sum((live[k].n - 1) * (abs(p[3]) + abs(p[2])) for k, p in parts.items())
    if sxx <= _ZERO_VAR_RTOL * scale:
        return "the pre-period ratio does not vary between units"
    theta = sxy / sxx
    pre_pooled = sum(st.pre_s for st in live.values()) / sum(st.ratio_pre[0] for st in live.values())  # type: ignore[misc,index]
    adjusted: dict[str, Estimate] = {}
    raw: dict[str, Estimate] = {}
    for key, (r, rp, var_a, var_b, cov_ab) in parts.items():
        n = live[key].n
        if var_a <= 0:
            continue  # constant ratio: that arm is reported as insufficient anyway
        v_adj = var_a - 2.0 * theta * cov_ab + theta * theta * var_b
        if v_adj <= _ZERO_VAR_RTOL * (var_a + theta * theta * var_b):
            return "the pre-period ratio explains the outcome exactly, leaving no variation"
        adjusted[key] = Estimate(n, r - theta * (rp - pre_pooled), v_adj)
        raw[key] = Estimate(n, r, var_a)
    return CupedFit(theta, pre_pooled, adjusted, raw)
