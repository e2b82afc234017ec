"""Plain-words recommendation from an analysed experiment.

Rules, in order:
1. ``invalid_srm``  - the traffic split fails the SRM check: nothing else can be trusted.
2. ``do_not_ship``  - any guardrail got significantly worse, or any primary metric got
   significantly worse (adjusted p-values).
3. ``ship``         - some primary metric got significantly better in its desired direction.
4. ``keep_running`` - otherwise; the reasons say how much can be detected now and how long is left.
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

    if alerts or primary_worse:
        bad = sorted({v["variant"] for _, v, _ in alerts + primary_worse})
        names = sorted({m["name"] for m, _, _ in alerts + primary_worse})
        for m, v, c in alerts:
            reasons.append(
                f"{v['variant']} made the guardrail '{m['name']}' worse: {_change(m, v, c)}. "
                f"This is unlikely to be chance ({_p(v['p_value_adjusted'])}, adjusted), "
                "and guardrails must not get worse."
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

    if primary_better:
        best_m, best_v, best_c = max(
            primary_better, key=lambda x: abs(x[1]["lift"]["relative"] or 0.0)
        )
        for m, v, c in primary_better:
            reasons.append(
                f"{v['variant']} improved '{m['name']}': {_change(m, v, c)}. "
                f"This is unlikely to be chance ({_p(v['p_value_adjusted'])}, adjusted; "
                f"{_chance(v['chance_to_beat_control'])} chance to beat {c['variant']})."
            )
        if any(m["role"] == "guardrail" for m in metrics):
            reasons.append("No guardrail metric got significantly worse.")
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
