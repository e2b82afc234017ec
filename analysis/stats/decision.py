"""Plain-words recommendation from an analysed experiment.

Rules, in order:
1. ``invalid_srm``  - the traffic split fails the SRM check: nothing else can be trusted.
2. ``do_not_ship``  - a guardrail's harm is shown to exceed its non-inferiority margin
   ("breached"), or a primary metric got significantly worse (adjusted p-values; never at an
   early look).
3. ``keep_running`` - an early look (sequential testing off, planned size or duration not
   reached): "Early look: not conclusive until N units (M%)", with the always-valid interval
   alongside and what would change the call.
4. ``keep_running`` - no plan at all and sequential testing off: a plan is missing, so nothing
   is shipped.
5. ``ship``         - a primary metric got significantly better in its desired direction for a
   variant whose guardrails all hold (non-inferiority shown).
6. ``keep_running`` - otherwise (a winner whose guardrails are not yet shown to hold, or no
   clear winner); the reasons say how much can be detected now and how long is left.
"""

from __future__ import annotations

import math
from typing import Any


def _pct(x: float, signed: bool = False) -> str:
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def _chance(x: float | None) -> str:
    if x is None:
        return "unknown"
    if x > 0.99:
        return "more than 99%"
    return "less than 1%" if x < 0.01 else f"{x:.0%}"


def _value(x: float | None, kind: str) -> str:
    if x is None:
        return "n/a"
    if kind == "conversion":
        return f"{x:.2%}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _change(m: dict[str, Any], v: dict[str, Any], control: dict[str, Any]) -> str:
    """'10.12% vs 9.87% in control (+2.5%, plausible range +0.3% to +4.7%)'."""
    kind = m["kind"]
    lift = v["lift"]
    mine = v.get("mean_adjusted", v["mean"])
    theirs = control.get("mean_adjusted", control["mean"])
    text = f"{_value(mine, kind)} vs {_value(theirs, kind)} in {control['variant']}"
    if m.get("quantile_label"):  # quantile metrics: say which value is compared ("p90 812 vs ...")
        text = f"{m['quantile_label']} {text}"
    if lift["relative"] is not None:
        text += f" ({_pct(lift['relative'], signed=True)}"
        ci = lift["ci_relative"]
        if ci:
            text += f", plausible range {_pct(ci[0], signed=True)} to {_pct(ci[1], signed=True)}"
        text += ")"
    return text


def _control(m: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in m["variants"] if v["is_control"])


def decide(body: dict[str, Any]) -> dict[str, Any]:
    """Recommendation, one-line headline and reasons a product manager can act on."""
    srm = body["srm"]
    metrics = body["metrics"]
    power = body["power"]
    reasons: list[str] = []
    if not srm["passed"]:
        return {
            "recommendation": "invalid_srm",
            "variant": None,
            "variants": [],
            "headline": "Results can't be trusted: the traffic split doesn't match the configuration.",
            "reasons": [
                srm["message"],
                "Find and fix the cause (assignment, redirects, bot filtering, logging), "
                "then restart the experiment with fresh data.",
            ],
        }

    alerts, primary_worse, primary_better, secondary = [], [], [], []
    for m in metrics:
        control = _control(m)
        for v in m["variants"]:
            if v["is_control"] or v["status"] != "ok":
                continue
            if v["guardrail_alert"]:
                alerts.append((m, v, control))
            elif m["role"] == "primary" and v["verdict"] == "worse":
                primary_worse.append((m, v, control))
            elif m["role"] == "primary" and v["verdict"] == "better":
                primary_better.append((m, v, control))
            elif m["role"] == "secondary" and v["verdict"] != "inconclusive":
                secondary.append((m, v, control))

    guards = _guardrails(metrics)
    if alerts or primary_worse:
        bad = sorted({v["variant"] for _, v, _ in alerts + primary_worse})
        names = sorted({m["name"] for m, _, _ in alerts + primary_worse})
        for m, v, c in alerts:
            reasons.append(
                f"{v['variant']} harmed the guardrail '{m['name']}' beyond its margin: "
                f"{_change(m, v, c)}; non-inferiority {v['non_inferiority']['text']}."
            )
        for m, v, c in primary_worse:
            reasons.append(
                f"{v['variant']} made the primary metric '{m['name']}' worse: {_change(m, v, c)} "
                f"({_p(v['p_value_adjusted'])}, adjusted)."
            )
        good = sorted({v["variant"] for _, v, _ in primary_better} - set(bad))
        if good:
            reasons.append(
                f"{', '.join(good)} improved a primary metric without a guardrail alert; "
                "consider a follow-up experiment with only that variant."
            )
        return {
            "recommendation": "do_not_ship",
            "variant": None,
            "variants": bad,
            "headline": (
                f"Don't ship {', '.join(bad)}: {'it' if len(bad) == 1 else 'they'} made "
                f"{', '.join(names)} worse."
            ),
            "reasons": reasons + _secondary(secondary),
        }

    plan = body.get("plan") or {}
    if plan.get("early_look"):
        return _early_look(body, plan, guards)
    if primary_better and plan and not plan.get("has_plan") and not body.get("sequential"):
        return _no_plan(body, primary_better, secondary)

    held = [x for x in primary_better if _guards_hold(guards, x[1]["variant"])]
    if primary_better and not held:
        return _guardrails_pending(body, primary_better, guards, secondary)
    if held:
        primary_better = held
        best_m, best_v, best_c = max(
            primary_better, key=lambda x: abs(x[1]["lift"]["relative"] or 0.0)
        )
        for m, v, c in primary_better:
            reasons.append(
                f"{v['variant']} improved '{m['name']}': {_change(m, v, c)}. "
                f"This is unlikely to be chance ({_p(v['p_value_adjusted'])}, adjusted; "
                f"{_chance(v['chance_to_beat_control'])} chance to beat {c['variant']})."
            )
        for m, v in guards.get(best_v["variant"], []):
            reasons.append(f"Guardrail '{m['name']}' {v['non_inferiority']['text']}.")
        rel = best_v["lift"]["relative"]
        by = f" by {_pct(rel, signed=True)}" if rel is not None else ""
        return {
            "recommendation": "ship",
            "variant": best_v["variant"],
            "variants": [best_v["variant"]],
            "headline": f"Ship {best_v['variant']}: it improved {best_m['name']}{by} without hurting any guardrail.",
            "reasons": reasons + _secondary(secondary),
        }

    primaries = [m for m in metrics if m["role"] == "primary"]
    if not primaries:
        reasons.append("No primary metric is defined, so there is nothing to decide on.")
    for m in primaries:
        for v in m["variants"]:
            if not v["is_control"] and v["status"] != "ok":
                reasons.append(
                    f"'{m['name']}' can't be compared yet for {v['variant']}. {v['reason']}"
                )
    if primaries and any(
        v["status"] == "ok" for m in primaries for v in m["variants"] if not v["is_control"]
    ):
        reasons.append("No primary metric shows a difference that is unlikely to be chance yet.")
    reasons += _power_reasons(power, metrics)
    if body.get("sequential"):
        reasons.append(
            "Sequential testing is on: you can look at the results at any time without "
            "raising the risk of a false winner."
        )
    else:
        reasons.append(
            "Sequential testing is off: decide at the planned sample size, not the first time "
            "a result looks good."
        )
    return {
        "recommendation": "keep_running",
        "variant": None,
        "variants": [],
        "headline": "Keep the experiment running: there is no clear winner yet.",
        "reasons": reasons + _secondary(secondary),
    }


def _secondary(items: list) -> list[str]:
    out = []
    for m, v, c in items:
        word = "improved" if v["verdict"] == "better" else "worsened"
        out.append(
            f"For information: {v['variant']} {word} the secondary metric '{m['name']}': {_change(m, v, c)}."
        )
    return out


def _power_reasons(power: dict[str, Any], metrics: list[dict[str, Any]]) -> list[str]:
    out = []
    name = next((m["name"] for m in metrics if m["metric"] == power.get("metric")), None)
    units = power.get("units_so_far") or 0
    if name and power.get("mde_reached_relative") is not None:
        out.append(
            f"With {units:,} units so far the test can reliably detect a change of about "
            f"{_pct(power['mde_reached_relative'])} or more in '{name}'; smaller effects may be missed."
        )
    planned = power.get("planned_sample_size")
    if planned:
        line = f"{_pct(min(power['progress'], 9.99))} of the planned {planned:,} units are in"
        if power.get("power_reached") is not None and power.get("mde_planned_relative") is not None:
            line += (
                f"; the chance of detecting the planned effect ({_pct(power['mde_planned_relative'])}) "
                f"is {power['power_reached']:.0%} so far"
            )
        if power.get("days_left") is not None:
            days = power["days_left"]
            if days <= 0:
                line += "; the planned size is reached, so a real effect is probably smaller than planned"
            else:
                line += f"; about {math.ceil(days)} more day(s) at the current traffic"
        out.append(line + ".")
    else:
        out.append(
            "No planned sample size was set: use the sample-size calculator to decide how long to run."
        )
    return out


def _guardrails(metrics: list[dict[str, Any]]) -> dict[str, list[tuple[dict, dict]]]:
    """{variant: [(guardrail metric, variant entry)]} for every guardrail comparison."""
    out: dict[str, list[tuple[dict, dict]]] = {}
    for m in metrics:
        if m["role"] != "guardrail":
            continue
        for v in m["variants"]:
            if not v["is_control"]:
                out.setdefault(v["variant"], []).append((m, v))
    return out


def _guards_hold(guards: dict[str, list[tuple[dict, dict]]], variant: str) -> bool:
    """Every guardrail of ``variant`` is shown non-inferior (insufficient data is not shown)."""
    return all(
        v.get("status") == "ok" and (v.get("non_inferiority") or {}).get("status") == "holds"
        for _, v in guards.get(variant, [])
    )


def _guard_lines(guards: dict[str, list[tuple[dict, dict]]], variant: str) -> list[str]:
    lines = []
    for m, v in guards.get(variant, []):
        ni = v.get("non_inferiority")
        if v.get("status") != "ok" or not ni:
            lines.append(f"Guardrail '{m['name']}' can't be judged yet for {variant}.")
        else:
            lines.append(f"Guardrail '{m['name']}' for {variant}: {ni['text']}.")
    return lines


def _always_valid(v: dict[str, Any]) -> str:
    seq = v.get("sequential") or {}
    ci = seq.get("ci_relative")
    if not ci:
        return ""
    return f"; always-valid range {_pct(ci[0], signed=True)} to {_pct(ci[1], signed=True)}"


def _until(plan: dict[str, Any]) -> str:
    progress = plan.get("progress") or 0.0
    if plan.get("planned_sample_size"):
        target = f"{plan['planned_sample_size']:,} units"
    else:
        target = f"day {plan['planned_duration_days']:g}"
    return f"{target} ({min(progress, 0.999):.0%})"


def _early_look(
    body: dict[str, Any], plan: dict[str, Any], guards: dict[str, list[tuple[dict, dict]]]
) -> dict[str, Any]:
    """Sequential testing off and the plan not reached: report, explain, never call it."""
    reasons: list[str] = [
        "Sequential testing is off, so the fixed-horizon p-values are only valid at the "
        f"planned end; looking earlier and stopping on a good-looking result is how false "
        f"winners are made. The data are at {_until(plan)} of the plan."
    ]
    changes: list[str] = []
    for m in body["metrics"]:
        if m["role"] != "primary":
            continue
        control = _control(m)
        for v in m["variants"]:
            if v["is_control"]:
                continue
            if v["status"] != "ok":
                reasons.append(f"'{m['name']}' can't be compared yet for {v['variant']}. {v['reason']}")
                continue
            reasons.append(
                f"{v['variant']} on '{m['name']}' so far: {_change(m, v, control)}"
                f"{_always_valid(v)}."
            )
            if v.get("would_be_significant"):
                better = (v["lift"]["absolute"] > 0) == (m["direction"] == "increase")
                word = "Ship" if better else "Don't ship"
                changes.append(
                    f"if {v['variant']} still shows this on '{m['name']}' at the planned size, "
                    f"the call would be {word} (today's {_p(v['p_value_adjusted'])} is not "
                    "valid at an early look)"
                )
    for variant in sorted(guards):
        reasons += _guard_lines(guards, variant)
    if not changes:
        changes.append(
            "reaching the planned size with a primary difference that is unlikely to be chance"
        )
    changes.append(
        "before that, only a guardrail harm beyond its margin (judged by the always-valid "
        "interval) stops the experiment"
    )
    reasons.append("What would change the call: " + "; ".join(changes) + ".")
    reasons += _power_reasons(body["power"], body["metrics"])
    return {
        "recommendation": "keep_running",
        "variant": None,
        "variants": [],
        "early_look": True,
        "headline": f"Early look: not conclusive until {_until(plan)}.",
        "reasons": reasons,
    }


def _no_plan(body: dict[str, Any], better: list, secondary: list) -> dict[str, Any]:
    """No planned size or duration and sequential testing off: never a Ship."""
    reasons = [
        "No planned sample size or duration was set and sequential testing is off, so there "
        "is no point at which a fixed-horizon result may be trusted: set the plan with the "
        "sample-size calculator (or use sequential testing) and start a new phase."
    ]
    for m, v, c in better:
        reasons.append(
            f"{v['variant']} looks better on '{m['name']}': {_change(m, v, c)} "
            f"({_p(v['p_value_adjusted'])}, adjusted), but without a plan this is not a decision."
        )
    return {
        "recommendation": "keep_running",
        "variant": None,
        "variants": [],
        "plan_missing": True,
        "headline": "No analysis plan: set a planned sample size before deciding.",
        "reasons": reasons + _secondary(secondary),
    }


def _guardrails_pending(
    body: dict[str, Any], better: list, guards: dict[str, list[tuple[dict, dict]]], secondary: list
) -> dict[str, Any]:
    """A primary winner whose guardrails are not all shown to stay within their margins."""
    reasons = []
    variants = sorted({v["variant"] for _, v, _ in better})
    for m, v, c in better:
        reasons.append(
            f"{v['variant']} improved '{m['name']}': {_change(m, v, c)} "
            f"({_p(v['p_value_adjusted'])}, adjusted)."
        )
    for variant in variants:
        reasons += _guard_lines(guards, variant)
    reasons.append(
        "A variant ships only when every guardrail is shown to stay within its margin; "
        "more data narrows the worst case."
    )
    reasons += _power_reasons(body["power"], body["metrics"])
    return {
        "recommendation": "keep_running",
        "variant": None,
        "variants": [],
        "headline": (
            f"Keep running: {', '.join(variants)} improved a primary metric, but not every "
            "guardrail is shown to stay within its margin yet."
        ),
        "reasons": reasons + _secondary(secondary),
    }
