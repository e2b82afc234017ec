"""A results snapshot as CSV: one row per metric x variant, then one per segment x metric x variant.

Long ("tidy") format so Tableau, Power BI or a spreadsheet can pivot it. Text cells that a
spreadsheet would run as a formula (starting with = + - @, tab or CR) are prefixed with an apostrophe.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

COLUMNS = [
    "experiment", "computed_at", "section", "segment_attribute", "segment_value",
    "metric", "metric_name", "role", "kind", "direction", "variant", "is_control", "status",
    "units", "mean", "lift_absolute", "ci_absolute_low", "ci_absolute_high",
    "lift_relative", "ci_relative_low", "ci_relative_high", "p_value", "p_value_adjusted",
    "significant", "chance_to_beat_control", "expected_loss", "guardrail_alert",
    "srm_p_value", "srm_passed", "recommendation", "phase", "p_value_segments",
]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest round-tripping form, no locale
    if isinstance(value, int):
        return value
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _pair(value: Any) -> tuple[Any, Any]:
    if isinstance(value, list | tuple) and len(value) == 2:
        return value[0], value[1]
    return None, None


def _variant_row(m: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    lift = v.get("lift") or {}
    ci_abs, ci_rel = _pair(lift.get("ci_absolute")), _pair(lift.get("ci_relative"))
    return {
        "metric": m.get("metric"), "metric_name": m.get("name"), "role": m.get("role"),
        "kind": m.get("kind"), "direction": m.get("direction"), "variant": v.get("variant"),
        "is_control": v.get("is_control"), "status": v.get("status"), "units": v.get("units"),
        "mean": v.get("mean"), "lift_absolute": lift.get("absolute"),
        "ci_absolute_low": ci_abs[0], "ci_absolute_high": ci_abs[1],
        "lift_relative": lift.get("relative"), "ci_relative_low": ci_rel[0], "ci_relative_high": ci_rel[1],
        "p_value": v.get("p_value"), "p_value_adjusted": v.get("p_value_adjusted"),
        "significant": v.get("significant"), "chance_to_beat_control": v.get("chance_to_beat_control"),
        "expected_loss": v.get("expected_loss"), "guardrail_alert": v.get("guardrail_alert"),
        "p_value_segments": v.get("p_value_segments"),
    }


def rows(payload: dict[str, Any], *, computed_at: str | None = None) -> Iterator[dict[str, Any]]:
    """Every CSV row of a results payload, as dicts keyed by COLUMNS."""
    srm = payload.get("srm") or {}
    base = {
        "experiment": payload.get("experiment"),
        "computed_at": computed_at or payload.get("computed_at"),
        "srm_p_value": srm.get("p_value"),
        "srm_passed": srm.get("passed"),
        "recommendation": (payload.get("decision") or {}).get("recommendation"),
        "phase": payload.get("phase", 1),
    }
    for m in payload.get("metrics") or []:
        for v in m.get("variants") or []:
            yield {**base, "section": "overall", **_variant_row(m, v)}
    for attribute, values in (payload.get("segments") or {}).items():
        for value, metrics in values.items():
            for m in metrics:
                info = {"role": "primary", **m}
                for v in m.get("variants") or []:
                    yield {**base, "section": "segment", "segment_attribute": attribute,
                           "segment_value": value, **_variant_row(info, v)}


def to_csv(payload: dict[str, Any], *, computed_at: str | None = None) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows(payload, computed_at=computed_at):
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    return out.getvalue()


def filename(experiment_key: str, computed_at: Any) -> str:
    stamp = computed_at.strftime("%Y%m%dT%H%M%SZ") if hasattr(computed_at, "strftime") else "latest"
    return f"{experiment_key}-results-{stamp}.csv"
