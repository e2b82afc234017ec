"""The conditions read from a report snapshot's payload (see analysis/stats/report.py)."""
from __future__ import annotations

from typing import Any


def srm(payload: dict[str, Any]) -> str | None:
    """The SRM message if the traffic split failed its check."""
    check = payload.get("srm") or {}
    if check.get("checked") and check.get("passed") is False:
        return str(check.get("message") or "Sample ratio mismatch.")
    return None


def guardrails(payload: dict[str, Any]) -> dict[str, str]:
    """``{"guardrail:<metric>:<variant>": message}`` for every breached non-inferiority guardrail."""
    found = {}
    for metric in payload.get("metrics") or []:
        if metric.get("role") != "guardrail":
            continue
        for v in metric.get("variants") or []:
            ni = v.get("non_inferiority") or {}
            if not v.get("is_control") and (v.get("guardrail_alert") or ni.get("status") == "breached"):
                key = f"guardrail:{metric.get('metric')}:{v.get('variant')}"
                found[key] = (f"Guardrail {metric.get('metric')} is breached for {v.get('variant')}: "
                              f"the harm is shown to exceed its non-inferiority margin.")
    return found


def decision(payload: dict[str, Any], guardrail_breached: bool) -> tuple[str, str] | None:
    """``("decision:ship"|"decision:do_not_ship", headline)`` once the primary metric decided.

    A "don't ship" caused by a guardrail is the guardrail's alert, not a second one.
    """
    block = payload.get("decision") or {}
    rec = block.get("recommendation")
    if rec == "ship" or (rec == "do_not_ship" and not guardrail_breached):
        return f"decision:{rec}", str(block.get("headline") or rec)
    return None


def data_quality(payload: dict[str, Any]) -> str | None:
    """A report-level exposure data-quality warning, if the report carries one."""
    warnings = payload.get("data_quality") or payload.get("warnings") or []
    if isinstance(warnings, dict):
        warnings = warnings.get("warnings") or []
    if isinstance(warnings, str):
        warnings = [warnings]
    warnings = [str(w) for w in warnings]
    sdk = payload.get("sdk_exposures") or {}
    refused = int(sdk.get("mismatched") or 0) + int(sdk.get("stale") or 0)
    if refused:  # SDK exposures the server's own evaluation disagreed with (POST /exposures)
        warnings.append(
            f"{refused} SDK exposures refused ({int(sdk.get('mismatched') or 0)} mismatched, "
            f"{int(sdk.get('stale') or 0)} stale configuration): a broken or outdated SDK"
        )
    return "; ".join(warnings) or None
