"""analyze_experiment: every treatment vs control, per metric, into one JSON-safe body.

Conventions (see docs/statistics.md):
* headline fields (``lift``, ``p_value``, ``p_value_adjusted``, ``significant``) are what the
  decision uses: CUPED-adjusted when pre-period data is present (unadjusted figures under
  ``unadjusted``), always-valid (mSPRT) when ``sequential`` is on (fixed-horizon figures under
  ``fixed_horizon``);
* multiplicity families: primary + secondary metrics form one family, guardrails another;
  each family is adjusted across metrics x treatment variants;
* data edge cases give ``status: "insufficient_data"`` with a plain-words ``reason``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import bayes, cuped, frequentist, sequential
from .decision import decide
from .errors import StatsInputError
from .inputs import (
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
from .moments import Estimate, Insufficient, estimate, sample_var
from .multiple import adjust, normalise_correction
from .power import mde_at, power_at
from .srm import srm_check

FAMILY_DECISION = "primary_secondary"
FAMILY_GUARDRAIL = "guardrail"
MIN_EVENTS = 5  # conversions / non-conversions per arm below which the z-test is rough
MIN_UNITS = 30  # units per arm below which a mean comparison gets a caution
IMBALANCE_RATIO = 100  # larger/smaller arm size ratio that earns a caution
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
        _, p = frequentist.proportions_ztest_pooled(counts[0], t.n, counts[1], c.n)
        df, crit, test = None, frequentist.z_critical(alpha), "two_proportion_z"
    elif kind == "conversion":
        p = frequentist.z_pvalue(diff / se)
        df, crit, test = None, frequentist.z_critical(alpha), "z_cuped"
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
    if kind == "ratio":
        if not st.den_s:
            return None, None
        est = estimate(kind, st)
        return st.s / st.den_s, (est.sd if isinstance(est, Estimate) else None)
    mean = st.s / st.n
    if kind == "conversion":
        return mean, math.sqrt(mean * (1.0 - mean))
    return mean, (math.sqrt(sample_var(st.n, st.s, st.q)) if st.n >= 2 else None)


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
) -> tuple[dict[str, Any], _Plan | None]:
    field = f"metrics[{idx}]"
    kind = m.kind
    raw_stats: dict[str, CleanStats] = {}
    for key, vs in m.variants.items():
        raw_stats[str(key)] = clean_stats(vs, kind, f"{field}.variants.{key}")
    stats = {k: raw_stats.get(k, EMPTY) for k in order}
    ests = {k: estimate(kind, st) for k, st in stats.items()}

    cuped_fit: cuped.CupedFit | None = None
    cuped_reason: str | None = None
    has_pre = any(st.has_pre for st in stats.values() if st.n > 0)
    if has_pre:
        if not use_cuped:
            cuped_reason = "CUPED is switched off for this experiment"
        elif kind == "ratio":
            cuped_reason = "CUPED is not applied to ratio metrics"
        else:
            fit = cuped.fit_cuped(stats)
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
        n_ok += 1
        counts = (st.s, stats[control].s)
        unadj = _fixed_horizon(t_est, c_est, kind=kind, adjusted=False, alpha=alpha, counts=counts)
        head_t, head_c, head = t_est, c_est, unadj
        entry["unadjusted"] = unadj.block()
        if has_pre:
            cblock: dict[str, Any] = {"applied": cuped_fit is not None}
            if cuped_fit is not None:
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
                cblock["reason"] = cuped_reason
            entry["cuped"] = cblock
        entry["fixed_horizon"] = head.block()
        entry["estimator"] = "cuped" if (cuped_fit is not None) else "unadjusted"
        entry["test"] = head.test

        lift = {
            "absolute": head.diff,
            "relative": head.rel,
            "ci_absolute": head.ci_abs(),
            "ci_relative": head.ci_rel(),
        }
        p_head = head.p
        if use_sequential:
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
            lift.update(ci_absolute=seq["ci_absolute"], ci_relative=seq["ci_relative"])
            p_head = p_seq
        entry["inference"] = "sequential" if use_sequential else "fixed_horizon"
        entry["lift"] = lift
        entry["p_value"] = p_head
        entry["p_value_adjusted"] = None  # filled per family
        entry["significant"] = False
        entry["verdict"] = "inconclusive"

        if kind == "conversion" and cuped_fit is None:
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
        entry["warnings"] = _warnings(kind, key, stats[key], control, stats[control])
        if not _all_finite(entry):
            n_ok -= 1
            base = {k: entry[k] for k in ("variant", "is_control", "units", "mean", "sd")}
            base["guardrail_alert"] = False
            out["variants"].append(_insufficient(base, TOO_EXTREME))
            continue
        out["variants"].append(entry)

        if plan is None:
            plan = _Plan(m.key, kind, head_c.mean, head_c.unit_var, head_c.n, head_t.n)
        else:
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


def _warnings(kind: str, key: str, st: CleanStats, control: str, ct: CleanStats) -> list[str]:
    """Plain-words cautions for results that are computed but rest on thin data."""
    out = []
    for name, x in ((control, ct), (key, st)):
        if kind == "conversion" and min(x.s, x.n - x.s) < MIN_EVENTS:
            out.append(
                f"{name} has fewer than {MIN_EVENTS} conversions or non-conversions, so the "
                "normal approximation is rough: treat the p-value as indicative."
            )
        elif kind != "conversion" and x.n < MIN_UNITS:
            out.append(f"{name} has only {x.n} units, so one unusual unit can swing the result.")
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
    "status",
    "reason",
    "lift",
    "p_value",
    "p_value_adjusted",
    "significant",
    "verdict",
    "guardrail_alert",
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


def _apply_corrections(metrics: list[dict[str, Any]], method: str, alpha: float) -> dict[str, Any]:
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
            if v["significant"]:
                v["verdict"] = "better" if better else "worse"
            v["guardrail_alert"] = bool(
                m["role"] == "guardrail" and v["significant"] and not better
            )
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


def _validate_metric(m: Any, idx: int) -> MetricInput:
    field = f"metrics[{idx}]"
    if not isinstance(m, MetricInput):
        raise StatsInputError(field, "must be a MetricInput")
    if not isinstance(m.key, str) or not m.key:
        raise StatsInputError(f"{field}.key", "must be a non-empty string")
    as_choice(m.kind, f"{field}.kind", KINDS)
    as_choice(m.role, f"{field}.role", ROLES)
    as_choice(m.direction, f"{field}.direction", DIRECTIONS)
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
) -> dict[str, Any]:
    """Analyse an experiment from sufficient statistics; returns a JSON-safe results body.

    Raises StatsInputError (naming the field) only for invalid configuration or impossible
    sums; data edge cases come back as ``insufficient_data`` results.
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
        exposure_counts = {str(k): vs.n for k, vs in metrics[0].variants.items()} if metrics else {}
        exposure_counts = {
            k: as_count(v, f"metrics[0].variants.{k}.n") for k, v in exposure_counts.items()
        }
    srm = srm_check(exposure_counts, w)

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
            )
        results.append(res)
        if plan is None and p is not None and m.role == "primary":
            plan = p
    multiple = _apply_corrections(results, method, alpha)
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
    }
    for res in results:
        res["variants"] = [_ordered(v) for v in res["variants"]]
    body["decision"] = decide(body)
    return json_safe(body)
