"""Segment breakdowns of a report: every metric, by unit attributes and by audience membership.

What is broken down (the analysis plan, frozen when the experiment starts):

* unit attributes: the experiment's own ``segment_attributes`` (frozen with its plan, see
  ``experiments.plan``), else ``REPORT_SEGMENT_ATTRIBUTES`` plus the targeting attributes;
* audiences: ``audience:<key>`` dimensions (member / non-member) from saved audience definitions
  passed in as dicts (``{"key", "match": "all"|"any", "conditions": [targeting rules]}``). The
  condition is evaluated in SQL over the attributes recorded at first exposure, with the
  targeting semantics (``assignment.targeting``) for the operators SQL can express; an audience
  using another operator (semver, dates) is skipped with a note, never approximated.

Values beyond the ``REPORT_MAX_SEGMENTS`` biggest, or with fewer than
``REPORT_SEGMENT_MIN_UNITS`` units, are merged into ``(other)`` (in SQL, ``analysis.queries``).
Each breakdown is exploratory: ``p_value_segments`` adjusts the p-values of one metric and
variant across the segment values shown (Benjamini-Hochberg), and the payload carries a caveat.
"""
from __future__ import annotations

import logging
import math
import re
from typing import Any

from django.conf import settings
from django.db import connection

from assignment.models import Exposure
from experiments.operands import as_number

from . import dialects
from . import queries as q
from .stats import MetricInput, StatsInputError, analyze_experiment
from .stats.multiple import benjamini_hochberg

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_ATTRIBUTES = ["country", "platform", "plan"]
DEFAULT_MAX_SEGMENTS = 10
AUDIENCE_PREFIX = "audience:"
MEMBER, NON_MEMBER = "member", "non-member"
AUDIENCE_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SQL_OPERATORS = ("equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "exists",
                 "not_exists")
#: Per-variant fields kept in segment summaries (a breakdown, not a full report).
VARIANT_FIELDS = (
    "variant", "is_control", "units", "mean", "status", "lift", "p_value", "p_value_adjusted",
    "significant", "chance_to_beat_control",
)
CAVEAT = (
    "Segments are for exploration: with many segments, some differences are expected by chance. "
    "p_value_segments is adjusted (Benjamini-Hochberg) across the segment values shown for each metric "
    "and variant; the decision never rests on a segment."
)
_FALSE = "1 = 0"


def segment_attributes(experiment) -> list[str]:
    """Unit attributes to break results down by: the experiment's own list (frozen at the start),
    else the configured ones plus the targeting ones."""
    if experiment.segment_attributes:
        return [str(n) for n in experiment.segment_attributes if n]
    configured = getattr(settings, "REPORT_SEGMENT_ATTRIBUTES", DEFAULT_SEGMENT_ATTRIBUTES)
    names = [*configured, *(rule.attribute for rule in experiment.targeting_rules.all())]
    return list(dict.fromkeys(str(n) for n in names if n))


# --- audience conditions -> SQL -------------------------------------------------------------------


def _same(d: dialects.Dialect, col: str, name: str, candidate: Any) -> tuple[str, list[Any]]:
    """SQL for ``assignment.targeting.same(attribute, candidate)`` (attribute present)."""
    text, tp = d.json_text(col, name)
    string, sp = d.json_string(col, name)
    number, np_ = d.json_number(col, name)
    if isinstance(candidate, bool):
        word = "true" if candidate else "false"
        return f"(({text} = %s AND {string} IS NULL) OR {string} = %s)", [*tp, word, *sp, *sp, word]
    if isinstance(candidate, int | float):
        value = as_number(candidate)
        return (f"{number} = %s", [*np_, value]) if value is not None else (_FALSE, [])
    if isinstance(candidate, str):
        parts, params = [f"{string} = %s"], [*sp, candidate]
        if candidate in ("true", "false"):  # a boolean attribute equals its word
            parts.append(f"({text} = %s AND {string} IS NULL)")
            params += [*tp, candidate, *sp]
        value = as_number(candidate)
        if value is not None:  # a number attribute equals a decimal string numerically
            parts.append(f"({string} IS NULL AND {number} = %s)")
            params += [*sp, *np_, value]
        return "(" + " OR ".join(parts) + ")", params
    return _FALSE, []


def condition_sql(d: dialects.Dialect, col: str, rule: dict[str, Any]) -> tuple[str, list[Any]] | None:
    """One targeting rule over the JSON attributes column ``col`` as a strict boolean (never
    NULL); None when SQL cannot express its operator."""
    name, operator = rule.get("attribute"), rule.get("operator")
    if not isinstance(name, str) or not q.ATTRIBUTE_RE.fullmatch(name) or operator not in SQL_OPERATORS:
        return None
    values = rule.get("values")
    values = list(values) if isinstance(values, list | tuple) else ([] if values is None else [values])
    first = values[0] if values else None
    text, tp = d.json_text(col, name)
    present = f"{text} IS NOT NULL"
    if operator == "exists":
        return f"({present})", tp
    if operator == "not_exists":
        return f"({text} IS NULL)", tp
    if operator in ("equals", "not_equals", "in", "not_in"):
        candidates = [first] if operator in ("equals", "not_equals") else values
        parts = [_same(d, col, name, c) for c in candidates]
        match = " OR ".join(sql for sql, _ in parts) or _FALSE
        params = [p for _, ps in parts for p in ps]
        negate = "NOT " if operator in ("not_equals", "not_in") else ""
        return f"({present} AND {negate}COALESCE(({match}), {_FALSE}))", [*tp, *params]
    if operator in ("gt", "gte", "lt", "lte"):
        bound = as_number(first)
        if bound is None:
            return f"({_FALSE})", []
        number, np_ = d.json_number(col, name)
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[operator]
        return f"COALESCE(({number} {sign} %s), {_FALSE})", [*np_, bound]
    # contains: both sides strings, case-sensitive substring
    if not isinstance(first, str):
        return f"({_FALSE})", []
    string, sp = d.json_string(col, name)
    return f"COALESCE(({string} IS NOT NULL AND {d.contains(string, '%s')}), {_FALSE})", [*sp, *sp, first]


def audience_expression(d: dialects.Dialect, col: str, audience: dict[str, Any]) -> tuple[str, list[Any]] | str:
    """``(CASE WHEN <conditions> THEN 'member' ELSE 'non-member' END, params)`` for one audience,
    or the reason it cannot be evaluated in SQL."""
    key = audience.get("key")
    match = audience.get("match", "all")
    conditions = audience.get("conditions") or []
    if match not in ("all", "any"):
        return f"audience {key!s}: match must be 'all' or 'any'"
    if not isinstance(conditions, list) or not all(isinstance(c, dict) for c in conditions):
        return f"audience {key!s}: conditions must be a list of rules"
    parts = []
    for rule in conditions:
        sql = condition_sql(d, col, rule)
        if sql is None:
            return (f"audience {key!s}: the condition on {rule.get('attribute')!s} uses the operator "
                    f"{rule.get('operator')!s}, which the report cannot evaluate in SQL; breakdown skipped")
        parts.append(sql)
    if not parts:
        body = "1 = 1" if match == "all" else _FALSE
    else:
        body = f" {'AND' if match == 'all' else 'OR'} ".join(sql for sql, _ in parts)
    t = d.text_type
    return (f"CASE WHEN {body} THEN CAST(%s AS {t}) ELSE CAST(%s AS {t}) END",
            [*(p for _, ps in parts for p in ps), MEMBER, NON_MEMBER])


def _register_sqlite_functions() -> None:
    """``abp_number`` (``dialects.SQLite.json_number``) on Django's SQLite connection."""
    if q._engine() is None and connection.vendor == "sqlite":
        connection.ensure_connection()
        connection.connection.create_function("abp_number", 1, dialects.sqlite_number, deterministic=True)


# --- breakdowns -----------------------------------------------------------------------------------


def _summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "metric": m["metric"], "name": m["name"], "kind": m["kind"], "role": m["role"],
            "direction": m["direction"], "status": m["status"],
            "variants": [{k: v.get(k) for k in VARIANT_FIELDS} for v in m["variants"]],
        }
        for m in result["metrics"]
    ]


def adjust_across_segments(block: dict[str, list[dict[str, Any]]]) -> None:
    """Set ``p_value_segments`` on every treatment of every metric: the BH-adjusted p-value
    across the segment values of ``block`` (one family per metric and variant)."""
    families: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for metrics in block.values():
        for m in metrics:
            for v in m["variants"]:
                if v.get("is_control"):
                    continue
                v["p_value_segments"] = None
                p = v.get("p_value")
                if isinstance(p, int | float) and math.isfinite(p):
                    families.setdefault((m["metric"], v["variant"]), []).append(v)
    for entries in families.values():
        for v, adjusted in zip(entries, benjamini_hochberg([v["p_value"] for v in entries]), strict=True):
            v["p_value_segments"] = adjusted


def _max_segments() -> int:
    value = getattr(settings, "REPORT_MAX_SEGMENTS", DEFAULT_MAX_SEGMENTS)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else DEFAULT_MAX_SEGMENTS


def breakdowns(
    experiment, ems: list, common: dict[str, Any], until, *, phase: int | None = None, since=None,
    audiences: list[dict[str, Any]] | None = None, metric_input=None,
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, Any]]:
    """``(segments, info)``: ``{dimension: {value: [metric summaries]}}`` for every metric, and
    ``{"caveat", "dimensions", "max_segments", "min_units", "notes"}``.

    ``metric_input(em, per_variant) -> MetricInput`` builds the engine input (the report's own).
    """
    notes: list[str] = []
    max_segments = _max_segments()
    min_units = getattr(settings, "REPORT_SEGMENT_MIN_UNITS", 20)  # privacy: see analysis.privacy
    dimensions: list[tuple[str, tuple[str, list[Any]] | None]] = [(a, None) for a in segment_attributes(experiment)]
    if audiences:
        _register_sqlite_functions()
        d = q._d()
        col = q._q(Exposure._meta.get_field("attributes").column)
        for audience in audiences:
            key = audience.get("key") if isinstance(audience, dict) else None
            if not isinstance(key, str) or not AUDIENCE_KEY_RE.fullmatch(key):
                notes.append(f"audience {str(key)[:64]!r}: not a valid audience key; breakdown skipped")
                continue
            expression = audience_expression(d, col, audience)
            if isinstance(expression, str):
                notes.append(expression)
                continue
            dimensions.append((AUDIENCE_PREFIX + key, expression))
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    if ems:
        for name, expression in dimensions:
            try:
                per_value = q.segment_statistics(
                    experiment, name, until=until, max_segments=max_segments, min_units=min_units,
                    phase=phase, since=since, expression=expression,
                )
            except ValueError as exc:  # a misconfigured attribute name must not cost the whole report
                logger.warning("cannot segment %s by %r: %s", experiment.key, name, exc)
                notes.append(f"{name}: {exc}; breakdown skipped")
                continue
            block: dict[str, list[dict[str, Any]]] = {}
            for value, stats in per_value.items():
                inputs: list[MetricInput] = [metric_input(em, stats.get(em.metric.key, {})) for em in ems]
                try:
                    result = analyze_experiment(metrics=inputs, exposure_counts=None, **common)
                except StatsInputError:
                    logger.exception("segment %s=%s of %s could not be analysed", name, value, experiment.key)
                    continue
                block[str(value)] = _summary(result)
            if block:
                adjust_across_segments(block)
                out[name] = block
    info = {"caveat": CAVEAT, "dimensions": list(out), "max_segments": max_segments, "min_units": min_units,
            "notes": notes}
    return out, info
