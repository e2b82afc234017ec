"""analyze_experiment: every treatment vs control, per metric, into one JSON-safe body.

Conventions (see docs/statistics.md):
* headline fields (``lift``, ``p_value``, ``p_value_adjusted``, ``significant``) are what the
  decision uses: CUPED-adjusted when pre-period data is present (unadjusted figures under
  ``unadjusted``), always-valid (mSPRT) when ``sequential`` is on (fixed-horizon figures under
  ``fixed_horizon``);
* multiplicity families: primary + secondary metrics form one family, guardrails another;
  each family is adjusted across metrics x treatment variants;
* data edge cases give ``status: "insufficient_data"`` with a plain-words ``reason``;
* every comparison carries the always-valid (mSPRT) figures under ``sequential`` (the
  lift-over-time chart draws only those); they are the headline only when sequential is on;
* early look: with sequential testing off and a planned size (or duration) not reached yet,
  nothing is ``significant`` (``would_be_significant`` says what the fixed-horizon test would
  say at face value) and the always-valid interval is shown alongside under ``sequential``;
* guardrails carry a ``non_inferiority`` block (one-sided test against a relative margin);
  ``guardrail_alert`` means the harm is shown to exceed the margin;
* conversions with a 2x2 cell below 10 use Fisher's exact test (``test: "fisher_exact"``);
* quantile metrics compare order-statistic estimates with a z-test (``test: "quantile_z"``, see
  ``quantile.py``); ratio metrics get CUPED through ``cuped_ratio.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import bayes, cuped, cuped_ratio, frequentist, sequential
from . import quantile as quantiles
from .decision import decide
from .errors import StatsInputError
from .inputs import (
    DEFAULT_MARGIN,
    DIRECTIONS,
    EMPTY,
    KINDS,
    ROLES,
    CleanStats,
    MetricInput,
    as_choice,
    as_count,
    as_float,
    as_probability,
    clean_stats,
)
from .jsonsafe import json_safe
from .moments import Estimate, Insufficient, estimate, sample_var, skew_needs
from .multiple import adjust, normalise_correction
from .power import mde_at, power_at
from .srm import srm_check

FAMILY_DECISION = "primary_secondary"
FAMILY_GUARDRAIL = "guardrail"
MIN_EVENTS = 5  # conversions / non-conversions per arm below which the z-test is rough
MIN_UNITS = 30  # units per arm below which a mean comparison gets a caution
IMBALANCE_RATIO = 100  # larger/smaller arm size ratio that earns a caution
CLAMPED = (
    "{units:,} unit(s) in {variant} reached the value limit ({limit:.0e}) and were clamped to it; "
    "check those events (a value this large is almost certainly a logging error)."
)
VALUE_LIMIT = 1e50  # keep in sync with analysis.queries.VALUE_LIMIT (documentation only here)
TOO_EXTREME = (
    "The values are too extreme to compare reliably (they overflow floating-point arithmetic); "
    "check the metric definition."
)


@dataclass
class _Plan:
    """What the power block needs from the first usable primary metric."""

    key: str
    kind: str
    control_mean: float
    unit_var: float
    n_control: int
    n_treatment: int


@dataclass(frozen=True)
class _Fixed:
    diff: float
    se: float
    df: float | None
    p: float
    crit: float
    rel: float | None
    se_rel: float | None
    test: str

    def ci_abs(self, half: float | None = None) -> list[float]:
        h = self.crit * self.se if half is None else half
        return [self.diff - h, self.diff + h]

    def ci_rel(self, mult: float | None = None) -> list[float] | None:
        if self.rel is None or self.se_rel is None:
            return None
        h = (self.crit if mult is None else mult) * self.se_rel
        return [self.rel - h, self.rel + h]

    def block(self) -> dict[str, Any]:
        return {
            "absolute": self.diff,
            "relative": self.rel,
            "ci_absolute": self.ci_abs(),
            "ci_relative": self.ci_rel(),
            "p_value": self.p,
            "test": self.test,
            "df": self.df,
        }


def _fixed_horizon(
    t: Estimate,
    c: Estimate,
    *,
    kind: str,
    adjusted: bool,
    alpha: float,
    counts: tuple[float, float] | None,
) -> _Fixed:
    diff = t.mean - c.mean
    se = math.sqrt(t.var_mean + c.var_mean)
    if kind == "conversion" and not adjusted and counts is not None:
        if frequentist.needs_exact(counts[0], t.n, counts[1], c.n):
            p = frequentist.fisher_exact_pvalue(counts[0], t.n, counts[1], c.n)
            test = "fisher_exact"
        else:
            _, p = frequentist.proportions_ztest_pooled(counts[0], t.n, counts[1], c.n)
            test = "two_proportion_z"
        df, crit = None, frequentist.z_critical(alpha)
    elif kind == "conversion":
        p = frequentist.z_pvalue(diff / se)
        df, crit, test = None, frequentist.z_critical(alpha), "z_cuped"
    elif kind == "quantile":  # order-statistic standard errors: a z-test of the difference
        diff, se, p, crit = quantiles.z_difference(t, c, alpha)
        df, test = None, "quantile_z"
    else:
        _, df_a, p = frequentist.welch_ttest(t.mean, t.unit_var, t.n, c.mean, c.unit_var, c.n)
        df = float(df_a)
        crit = float(frequentist.t_critical(alpha, df))
        test = "welch_t_cuped" if adjusted else "welch_t"
    rel = se_rel = None
    if c.mean != 0:
        r, s = frequentist.relative_lift(t.mean, t.var_mean, c.mean, c.var_mean)
        if math.isfinite(r) and math.isfinite(s):  # else: control mean too close to zero
            rel, se_rel = float(r), float(s)
    return _Fixed(diff, se, df, float(p), float(crit), rel, se_rel, test)


def _raw_view(kind: str, st: CleanStats) -> tuple[float | None, float | None]:
    """Displayed mean and sd of a variant, whatever its status."""
    if st.n == 0:
        return None, None
    if kind == "quantile":
        return (st.quantile[0] if st.quantile else None), None
    if kind == "ratio":
        if not st.den_s:
            return None, None
        est = estimate(kind, st)
        return st.s / st.den_s, (est.sd if isinstance(est, Estimate) else None)
    mean = st.s / st.n
    if kind == "conversion":
        return mean, math.sqrt(mean * (1.0 - mean))
    return mean, (math.sqrt(sample_var(st.n, st.s, st.q, st.m2)) if st.n >= 2 else None)


def _quantile_view(kind: str, st: CleanStats) -> dict[str, Any]:
    """Quantile metrics: the variant's distribution-free interval and the ranks it came from."""
    if kind != "quantile" or not st.quantile:
        return {}
    _, lower, upper, lo_r, hi_r = st.quantile
    ok = None not in (lower, upper)
    return {"ci": [lower, upper] if ok else None, "ci_ranks": [lo_r, hi_r] if ok else None}


def _insufficient(entry: dict[str, Any], reason: str) -> dict[str, Any]:
    entry.update(
        status="insufficient_data",
        reason=reason,
        lift=None,
        p_value=None,
        p_value_adjusted=None,
        significant=False,
        verdict="inconclusive",
        chance_to_beat_control=None,
        expected_loss=None,
        credible_interval_relative=None,
    )
    return entry


def _signed(x: float) -> str:
    return f"{x:+.1%}"


def _non_inferiority(
    head: _Fixed,
    seq: dict[str, Any] | None,
    *,
    margin: float,
    increase: bool,
    alpha: float,
) -> dict[str, Any]:
    """One-sided non-inferiority of a guardrail against a relative ``margin``.

    H0: the harm is at least the margin; rejecting it ("holds") means no harm beyond the margin
    with (1 - alpha) confidence: the worst-case end of the one-sided (1 - alpha) interval stays
    inside the margin. "breached": even the best-case end is beyond the margin. Otherwise "not
    yet shown". With ``seq`` (sequential testing, or an early look) the always-valid interval is
    used instead, which stays valid however often one looks. Requiring every guardrail to hold
    is an intersection-union test, so no multiplicity correction is needed for it.
    """
    limit = -margin if increase else margin
    out: dict[str, Any] = {
        "margin_relative": limit,
        "status": "not_shown",
        "worst_case_relative": None,
        "best_case_relative": None,
        "p_value": None,
        "confidence": 1.0 - alpha,
        "interval": "always_valid" if seq else "one_sided_fixed_horizon",
    }
    if head.rel is None or head.se_rel is None:
        out["text"] = (
            f"not yet shown: the control mean is zero, so a relative change (margin "
            f"{_signed(limit)}) is undefined"
        )
        return out
    if seq and seq.get("ci_relative"):
        lo, hi = seq["ci_relative"]
    else:
        crit = float(
            frequentist.t_critical(2.0 * alpha, head.df)
            if head.df is not None
            else frequentist.z_critical(2.0 * alpha)
        )
        lo, hi = head.rel - crit * head.se_rel, head.rel + crit * head.se_rel
        distance = (head.rel + margin) if increase else (margin - head.rel)
        # No spread of the relative lift (e.g. no events in one small arm): the side decides.
        stat = distance / head.se_rel if head.se_rel > 0 else math.copysign(math.inf, distance) if distance else 0.0
        p = (
            frequentist.t_pvalue(stat, head.df, "larger")
            if head.df is not None
            else frequentist.z_pvalue(stat, "larger")
        )
        out["p_value"] = float(p)
    worst, best = (lo, hi) if increase else (hi, lo)
    holds = worst > limit if increase else worst < limit
    breached = best < limit if increase else best > limit
    out.update(worst_case_relative=worst, best_case_relative=best)
    if holds:
        out["status"] = "holds"
        out["text"] = f"holds: worst case {_signed(worst)} vs margin {_signed(limit)}"
    elif breached:
        out["status"] = "breached"
        out["text"] = f"breached: at best {_signed(best)} vs margin {_signed(limit)}"
    else:
        out["text"] = f"not yet shown: worst case {_signed(worst)} vs margin {_signed(limit)}"
    return out


def _plan_horizon(weights: dict[str, float], key: str, planned: int | None) -> float:
    wsum = sum(weights.values())
    if planned and weights.get(key, 0.0) > 0:
        n = planned * weights[key] / wsum
        if n >= 2:
            return n
    return float(sequential.DEFAULT_HORIZON_PER_VARIANT)


def _analyze_metric(
    m: MetricInput,
    idx: int,
    *,
    order: list[str],
    control: str,
    weights: dict[str, float],
    alpha: float,
    use_sequential: bool,
    use_cuped: bool,
    planned: int | None,
    early_look: bool = False,
) -> tuple[dict[str, Any], _Plan | None]:
    field = f"metrics[{idx}]"
    kind = m.kind
    raw_stats: dict[str, CleanStats] = {}
    for key, vs in m.variants.items():
        raw_stats[str(key)] = clean_stats(vs, kind, f"{field}.variants.{key}")
    stats = {k: raw_stats.get(k, EMPTY) for k in order}
    if kind == "quantile":
        assert m.quantile is not None
        ests = {k: quantiles.quantile_estimate(st, m.quantile, alpha) for k, st in stats.items()}
    else:
        ests = {k: estimate(kind, st) for k, st in stats.items()}

    cuped_fit: cuped.CupedFit | None = None
    cuped_reason: str | None = None
    has_pre = any(st.has_pre for st in stats.values() if st.n > 0)
    if has_pre:
        if not use_cuped:
            cuped_reason = "CUPED is switched off for this experiment"
        else:
            fit = cuped_ratio.fit_cuped_ratio(stats) if kind == "ratio" else cuped.fit_cuped(stats)
            if isinstance(fit, str):
                cuped_reason = fit
            else:
                cuped_fit = fit

    out: dict[str, Any] = {
        "metric": m.key,
        "name": m.name,
        "kind": kind,
        "role": m.role,
        "direction": m.direction,
        "family": FAMILY_GUARDRAIL if m.role == "guardrail" else FAMILY_DECISION,
        "status": "ok",
        "variants": [],
    }
    if kind == "quantile":
        assert m.quantile is not None
        out["quantile"] = m.quantile
        out["quantile_label"] = quantiles.quantile_label(m.quantile)
    increase = m.direction == "increase"
    c_est = ests[control]
    c_mean, c_sd = _raw_view(kind, stats[control])
    out["variants"].append(
        {
            "variant": control,
            "is_control": True,
            "units": stats[control].n,
            "mean": c_mean,
            "sd": c_sd,
            "status": "ok" if isinstance(c_est, Estimate) else "insufficient_data",
            **({"reason": c_est.reason} if isinstance(c_est, Insufficient) else {}),
            **(
                {"mean_adjusted": cuped_fit.estimates[control].mean}
                if cuped_fit and control in cuped_fit.estimates
                else {}
            ),
            **_quantile_view(kind, stats[control]),
        }
    )
    plan: _Plan | None = None
    n_ok = 0
    for key in order:
        if key == control:
            continue
        st = stats[key]
        t_est = ests[key]
        mean, sd = _raw_view(kind, st)
        entry: dict[str, Any] = {
            "variant": key,
            "is_control": False,
            "units": st.n,
            "mean": mean,
            "sd": sd,
            "guardrail_alert": False,
            **_quantile_view(kind, st),
        }
        if isinstance(c_est, Insufficient):
            out["variants"].append(
                _insufficient(entry, f"Not enough data in {control}: {c_est.reason}.")
            )
            continue
        if isinstance(t_est, Insufficient):
            out["variants"].append(
                _insufficient(entry, f"Not enough data in {key}: {t_est.reason}.")
            )
            continue
        if t_est.unit_var <= 0 and c_est.unit_var <= 0:
            out["variants"].append(_insufficient(entry, (
                f"Neither {key} nor {control} varies yet (no conversions in either, or "
                "every unit converted in both), so there is nothing to compare."
            )))
            continue
        n_ok += 1
        counts = (st.s, stats[control].s)
        unadj = _fixed_horizon(t_est, c_est, kind=kind, adjusted=False, alpha=alpha, counts=counts)
        head_t, head_c, head = t_est, c_est, unadj
        entry["unadjusted"] = unadj.block()
        fit_here = (
            cuped_fit is not None
            and unadj.test != "fisher_exact"  # small counts: the exact test on raw counts
            and key in cuped_fit.estimates
            and control in cuped_fit.estimates
        )
        if has_pre:
            cblock: dict[str, Any] = {"applied": fit_here}
            if fit_here:
                assert cuped_fit is not None
                head_t, head_c = cuped_fit.estimates[key], cuped_fit.estimates[control]
                head = _fixed_horizon(
                    head_t, head_c, kind=kind, adjusted=True, alpha=alpha, counts=None
                )
                entry["mean_adjusted"] = head_t.mean
                cblock.update(
                    theta=cuped_fit.theta,
                    variance_reduction=cuped.variance_reduction(cuped_fit, key, control),
                    **head.block(),
                )
            else:
                cblock["reason"] = cuped_reason or "too little variation in one of the arms"
            entry["cuped"] = cblock
        entry["fixed_horizon"] = head.block()
        entry["estimator"] = "cuped" if fit_here else "unadjusted"
        entry["test"] = head.test

        lift = {
            "absolute": head.diff,
            "relative": head.rel,
            "ci_absolute": head.ci_abs(),
            "ci_relative": head.ci_rel(),
        }
        p_head = head.p
        if True:  # always-valid interval: the headline when sequential, alongside otherwise
            var = head.se * head.se
            var_plan = head_t.unit_var / _plan_horizon(
                weights, key, planned
            ) + head_c.unit_var / _plan_horizon(weights, control, planned)
            p_arr, half_arr = sequential.always_valid(head.diff, var, var_plan, alpha)
            p_seq, half = float(p_arr), float(half_arr)
            seq = {
                "p_value": p_seq,
                "ci_absolute": head.ci_abs(half),
                "ci_relative": head.ci_rel(half / head.se),
                "method": "mSPRT (normal mixture)",
                "tau": math.sqrt(float(sequential.mixing_variance(alpha, var_plan))),
            }
            entry["sequential"] = seq
            if use_sequential:
                lift.update(ci_absolute=seq["ci_absolute"], ci_relative=seq["ci_relative"])
                p_head = p_seq
        entry["inference"] = "sequential" if use_sequential else "fixed_horizon"
        entry["early_look"] = early_look
        if m.role == "guardrail":
            margin = DEFAULT_MARGIN if m.non_inferiority_margin is None else m.non_inferiority_margin
            entry["non_inferiority"] = _non_inferiority(
                head,
                entry.get("sequential") if (use_sequential or early_look) else None,
                margin=float(margin),
                increase=increase,
                alpha=alpha,
            )
        entry["lift"] = lift
        entry["p_value"] = p_head
        entry["p_value_adjusted"] = None  # filled per family
        entry["significant"] = False
        entry["verdict"] = "inconclusive"

        if kind == "conversion" and not fit_here:
            b = bayes.beta_binomial(
                st.s, st.n, stats[control].s, stats[control].n, increase=increase, alpha=alpha
            )
        else:
            b = bayes.normal_model(
                head_t.mean,
                head_t.var_mean,
                head_c.mean,
                head_c.var_mean,
                increase=increase,
                alpha=alpha,
            )
        entry["chance_to_beat_control"] = b.chance_to_beat
        entry["expected_loss"] = b.expected_loss
        entry["credible_interval_relative"] = list(b.ci_relative) if b.ci_relative else None
        entry["bayesian"] = {"model": b.model, "prior": b.prior, "credible_level": 1.0 - alpha}
        entry["status"] = "ok"
        entry["warnings"] = _warnings(
            kind, key, stats[key], control, stats[control], exact=head.test == "fisher_exact"
        )
        if not _all_finite(entry):
            n_ok -= 1
            base = {k: entry[k] for k in ("variant", "is_control", "units", "mean", "sd")}
            base["guardrail_alert"] = False
            out["variants"].append(_insufficient(base, TOO_EXTREME))
            continue
        out["variants"].append(entry)

        if plan is None and head_c.unit_var > 0:
            plan = _Plan(m.key, kind, head_c.mean, head_c.unit_var, head_c.n, head_t.n)
        elif plan is not None:
            plan.n_treatment = min(plan.n_treatment, head_t.n)

    if n_ok == 0:
        out["status"] = "insufficient_data"
        reasons = [v["reason"] for v in out["variants"] if v.get("reason") and not v["is_control"]]
        out["reason"] = reasons[0] if reasons else "There is no treatment variant to compare."
        out["variants"] = out.pop("variants")  # keep the list last
    return out, plan


def _all_finite(value: Any) -> bool:
    """True if no float anywhere inside is NaN or infinite (None is fine)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_all_finite(v) for v in value)
    return True


def _warnings(
    kind: str, key: str, st: CleanStats, control: str, ct: CleanStats, *, exact: bool = False
) -> list[str]:
    """Plain-words cautions for results that are computed but rest on thin data."""
    out = []
    if exact:
        out.append(
            "Small counts: the p-value comes from Fisher's exact test; the interval is the "
            "normal approximation and only indicative."
        )
    for name, x in ((control, ct), (key, st)):
        if kind == "conversion" and not exact and min(x.s, x.n - x.s) < MIN_EVENTS:
            out.append(
                f"{name} has fewer than {MIN_EVENTS} conversions or non-conversions, so the "
                "normal approximation is rough: treat the p-value as indicative."
            )
        elif kind != "conversion" and x.n < MIN_UNITS:
            out.append(f"{name} has only {x.n} units, so one unusual unit can swing the result.")
        skew = skew_needs(x) if kind in ("count", "sum") else None
        if skew is not None:
            out.append(
                f"{name} is heavily skewed (skewness {skew[0]:.1f}): the normal approximation "
                f"needs about {skew[1]:,} units per variant (355 x skewness squared) and "
                f"{name} has {x.n:,}; treat the p-value and interval as rough, or cap the metric."
            )
        if x.clamped:
            out.append(CLAMPED.format(units=x.clamped, variant=name, limit=VALUE_LIMIT))
    small, large = sorted((st.n, ct.n))
    if large > IMBALANCE_RATIO * small:
        out.append(
            f"The groups are very unequal ({key}: {st.n:,} units, {control}: {ct.n:,}); the "
            "comparison is only as precise as the smaller group."
        )
    return out


_KEY_ORDER = (
    "variant",
    "is_control",
    "units",
    "mean",
    "sd",
    "mean_adjusted",
    "ci",
    "ci_ranks",
    "status",
    "reason",
    "lift",
    "p_value",
    "p_value_adjusted",
    "significant",
    "verdict",
    "early_look",
    "would_be_significant",
    "guardrail_alert",
    "non_inferiority",
    "chance_to_beat_control",
    "expected_loss",
    "credible_interval_relative",
    "estimator",
    "inference",
    "test",
    "warnings",
    "sequential",
    "cuped",
    "fixed_horizon",
    "unadjusted",
    "bayesian",
)


def _ordered(entry: dict[str, Any]) -> dict[str, Any]:
    """Stable, readable key order (headline figures first, detail blocks last)."""
    head = {k: entry[k] for k in _KEY_ORDER if k in entry}
    return head | {k: v for k, v in entry.items() if k not in head}


def _apply_corrections(
    metrics: list[dict[str, Any]], method: str, alpha: float, early_look: bool = False
) -> dict[str, Any]:
    families: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {
        FAMILY_DECISION: [],
        FAMILY_GUARDRAIL: [],
    }
    for m in metrics:
        for v in m["variants"]:
            if not v["is_control"] and v["status"] == "ok":
                families[m["family"]].append((m, v))
    for members in families.values():
        adjusted = adjust([v["p_value"] for _, v in members], method)
        for (m, v), p_adj in zip(members, adjusted, strict=True):
            v["p_value_adjusted"] = p_adj
            v["significant"] = bool(p_adj < alpha)
            better = (
                v["lift"]["absolute"] > 0
                if m["direction"] == "increase"
                else v["lift"]["absolute"] < 0
            )
            if early_look:  # before the planned size nothing is called (peeking)
                v["would_be_significant"] = v["significant"]
                v["significant"] = False
            if v["significant"]:
                v["verdict"] = "better" if better else "worse"
            ni = v.get("non_inferiority") or {}
            v["guardrail_alert"] = bool(m["role"] == "guardrail" and ni.get("status") == "breached")
    return {
        "method": method,
        "families": {
            FAMILY_DECISION: {
                "roles": ["primary", "secondary"],
                "tests": len(families[FAMILY_DECISION]),
            },
            FAMILY_GUARDRAIL: {"roles": ["guardrail"], "tests": len(families[FAMILY_GUARDRAIL])},
        },
    }


def _power_block(
    plan: _Plan | None,
    *,
    weights: dict[str, float],
    control: str,
    alpha: float,
    power: float,
    planned: int | None,
    units: int,
    daily: float | None,
    n_treatments: int,
) -> dict[str, Any]:
    alpha_cmp = alpha / max(1, n_treatments)
    block: dict[str, Any] = {
        "planned_sample_size": planned,
        "units_so_far": units,
        "progress": (units / planned) if planned else None,
        "daily_units": daily,
        "days_left": None,
        "target_power": power,
        "alpha_per_comparison": alpha_cmp,
        "metric": plan.key if plan else None,
        "mde_reached_absolute": None,
        "mde_reached_relative": None,
        "mde_planned_relative": None,
        "power_reached": None,
    }
    if planned and daily and daily > 0:
        block["days_left"] = max(0.0, planned - units) / daily
    if plan is None:
        return block
    se_now = math.sqrt(plan.unit_var * (1.0 / plan.n_control + 1.0 / plan.n_treatment))
    mde_now = mde_at(se_now, alpha_cmp, power)
    block["mde_reached_absolute"] = mde_now
    if plan.control_mean != 0:
        block["mde_reached_relative"] = mde_now / abs(plan.control_mean)
    wsum = sum(weights.values())
    t_weights = [w for k, w in weights.items() if k != control and w > 0]
    if planned and weights.get(control, 0) > 0 and t_weights:
        n_c = planned * weights[control] / wsum
        n_t = planned * min(t_weights) / wsum
        se_plan = math.sqrt(plan.unit_var * (1.0 / n_c + 1.0 / n_t))
        mde_plan = mde_at(se_plan, alpha_cmp, power)
        if plan.control_mean != 0:
            block["mde_planned_relative"] = mde_plan / abs(plan.control_mean)
        block["power_reached"] = power_at(mde_plan, se_now, alpha_cmp)
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in block.items()
    }


def _plan_block(
    planned: int | None,
    planned_days: float | None,
    elapsed: float | None,
    *,
    units: int,
    sequential: bool,
) -> dict[str, Any]:
    """Where the experiment stands against its plan, and whether this is an early look.

    The plan is reached when the units reach the planned sample size; the planned duration
    counts only when no sample size is planned (it is usually an estimate of how long the size
    takes, and slow traffic must not turn half the sample into a "final" look). With sequential
    testing off every analysis before that is an early look: nothing is called significant and
    nothing is shipped.
    """
    planned_days = planned_days if planned_days and planned_days > 0 else None
    has_plan = bool(planned) or planned_days is not None
    progress = None
    if planned:
        progress = units / planned
    elif planned_days is not None:
        progress = max(0.0, elapsed or 0.0) / planned_days
    reached = progress is not None and progress >= 1.0
    return {
        "planned_sample_size": planned,
        "planned_duration_days": planned_days,
        "elapsed_days": elapsed,
        "units": units,
        "has_plan": has_plan,
        "progress": progress,
        "reached": reached,
        "early_look": bool(not sequential and has_plan and not reached),
        "sequential": sequential,
    }


def _validate_metric(m: Any, idx: int) -> MetricInput:
    field = f"metrics[{idx}]"
    if not isinstance(m, MetricInput):
        raise StatsInputError(field, "must be a MetricInput")
    if not isinstance(m.key, str) or not m.key:
        raise StatsInputError(f"{field}.key", "must be a non-empty string")
    as_choice(m.kind, f"{field}.kind", KINDS)
    as_choice(m.role, f"{field}.role", ROLES)
    as_choice(m.direction, f"{field}.direction", DIRECTIONS)
    if m.kind == "quantile":
        as_probability(m.quantile, f"{field}.quantile")
    elif m.quantile is not None:
        raise StatsInputError(f"{field}.quantile", "only quantile metrics have a quantile")
    if m.non_inferiority_margin is not None:
        margin = as_float(m.non_inferiority_margin, f"{field}.non_inferiority_margin")
        if not 0.0 < margin <= 1.0:
            raise StatsInputError(
                f"{field}.non_inferiority_margin", "must be a relative margin in (0, 1]"
            )
    if not isinstance(m.variants, dict):
        raise StatsInputError(
            f"{field}.variants", "must be a mapping of variant key to VariantStats"
        )
    return m


def analyze_experiment(
    *,
    experiment: str,
    control: str,
    weights: dict[str, float],
    metrics: list[MetricInput],
    alpha: float = 0.05,
    correction: str = "holm",
    sequential: bool = False,
    cuped: bool = True,
    exposure_counts: dict[str, int] | None = None,
    planned_sample_size: int | None = None,
    daily_units: float | None = None,
    power: float = 0.8,
    planned_duration_days: float | None = None,
    elapsed_days: float | None = None,
) -> dict[str, Any]:
    """Analyse an experiment from sufficient statistics; returns a JSON-safe results body.

    Raises StatsInputError (naming the field) only for invalid configuration or impossible
    sums; data edge cases come back as ``insufficient_data`` results. The plan (planned size
    and/or duration, and how far the data are) decides whether this is an early look.
    """
    alpha = as_probability(alpha, "alpha")
    power = as_probability(power, "power")
    method = normalise_correction(correction)
    if not isinstance(sequential, bool):
        raise StatsInputError("sequential", "must be true or false")
    if not isinstance(cuped, bool):
        raise StatsInputError("cuped", "must be true or false")
    if not isinstance(weights, dict) or not weights:
        raise StatsInputError("weights", "must be a non-empty mapping of variant to weight")
    w = {str(k): as_float(v, f"weights.{k}") for k, v in weights.items()}
    if control not in w:
        raise StatsInputError("control", "must be one of the weighted variants")
    if not isinstance(metrics, list | tuple):
        raise StatsInputError("metrics", "must be a list of MetricInput")
    metrics = [_validate_metric(m, i) for i, m in enumerate(metrics)]
    keys = [m.key for m in metrics]
    if len(set(keys)) != len(keys):
        raise StatsInputError("metrics", "metric keys must be unique")
    planned = (
        None
        if planned_sample_size is None
        else as_count(planned_sample_size, "planned_sample_size")
    )
    if planned == 0:
        planned = None
    daily = None if daily_units is None else as_float(daily_units, "daily_units")
    if daily is not None and daily < 0:
        raise StatsInputError("daily_units", "cannot be negative")

    order = [control] + [k for k in w if k != control]
    for m in metrics:
        order += [str(k) for k in m.variants if str(k) not in order]

    if exposure_counts is None:
        # Units per variant from the first metric that counts every exposed unit (a quantile
        # metric's n is the units with a value, which the treatment may change).
        first = next((i for i, m in enumerate(metrics) if m.kind != "quantile"), 0)
        exposure_counts = {str(k): vs.n for k, vs in metrics[first].variants.items()} if metrics else {}
        exposure_counts = {
            k: as_count(v, f"metrics[{first}].variants.{k}.n") for k, v in exposure_counts.items()
        }
    srm = srm_check(exposure_counts, w)
    plan_block = _plan_block(
        planned,
        None if planned_duration_days is None else as_float(planned_duration_days, "planned_duration_days"),
        None if elapsed_days is None else as_float(elapsed_days, "elapsed_days"),
        units=sum(srm["counts"].values()),
        sequential=sequential,
    )
    early = plan_block["early_look"]

    results: list[dict[str, Any]] = []
    plan: _Plan | None = None
    for i, m in enumerate(metrics):
        with np.errstate(all="ignore"):  # overflow is caught by the finiteness check
            res, p = _analyze_metric(
                m,
                i,
                order=order,
                control=control,
                weights=w,
                alpha=alpha,
                use_sequential=sequential,
                use_cuped=cuped,
                planned=planned,
                early_look=early,
            )
        results.append(res)
        if plan is None and p is not None and m.role == "primary":
            plan = p
    multiple = _apply_corrections(results, method, alpha, early_look=early)
    power_block = _power_block(
        plan,
        weights=w,
        control=control,
        alpha=alpha,
        power=power,
        planned=planned,
        units=sum(srm["counts"].values()),
        daily=daily,
        n_treatments=len(w) - 1,
    )
    body = {
        "experiment": experiment,
        "control": control,
        "alpha": alpha,
        "correction": method,
        "sequential": sequential,
        "cuped": cuped,
        "srm": srm,
        "multiple_comparisons": multiple,
        "metrics": results,
        "power": power_block,
        "plan": plan_block,
    }
    for res in results:
        res["variants"] = [_ordered(v) for v in res["variants"]]
    body["decision"] = decide(body)
    return json_safe(body)
