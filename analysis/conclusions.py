"""Conclusions of completed experiments and the learnings library built from them.

The write rule (``save_conclusion``) and the library's reads live here, so the report page's
form, the admin and tests all go through the same checks.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet

from experiments.models import Experiment, ExperimentMetric

from .models import Conclusion, ReportSnapshot

#: Experiments that can be concluded (completed, or completed then archived).
CONCLUDABLE = (Experiment.Status.COMPLETED, Experiment.Status.ARCHIVED)
TAG_RE = re.compile(r"[a-z0-9][a-z0-9 _.-]{0,39}")
MAX_TAGS = 12
MAX_LINKS = 10


def parse_tags(raw: str | list[str]) -> list[str]:
    """Comma-separated (or a list) -> normalised, de-duplicated tags; ValidationError naming a bad one."""
    items = raw if isinstance(raw, list) else str(raw or "").split(",")
    tags: list[str] = []
    for item in items:
        tag = " ".join(str(item).strip().lower().split())
        if not tag:
            continue
        if not TAG_RE.fullmatch(tag):
            raise ValidationError({"tags": f"'{tag}': tags are 1-40 letters, digits, spaces, '_', '.' or '-'."})
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise ValidationError({"tags": f"At most {MAX_TAGS} tags."})
    return tags


def parse_links(raw: str | list[str]) -> list[str]:
    """One URL a line (or a list); only http(s) URLs (a javascript: link would run on the page)."""
    items = raw if isinstance(raw, list) else str(raw or "").splitlines()
    links = [str(x).strip() for x in items if str(x).strip()]
    for link in links:
        parts = urlsplit(link)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(link) > 500:
            raise ValidationError({"links": f"'{link[:80]}' is not an http(s) URL (at most 500 characters)."})
    if len(links) > MAX_LINKS:
        raise ValidationError({"links": f"At most {MAX_LINKS} links."})
    return links


def save_conclusion(experiment: Experiment, *, outcome: str, summary: str, tags: str | list[str] = "",
                    links: str | list[str] = "", user=None) -> Conclusion:
    """Create or update the conclusion of a completed experiment.

    The experiment row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL) for the check and the
    write, so two people concluding at once give one row (the later edit wins, both in history).
    """
    if outcome not in Conclusion.Outcome.values:
        raise ValidationError({"outcome": f"Choose one of {', '.join(Conclusion.Outcome.values)}."})
    summary = (summary or "").strip()
    if not summary:
        raise ValidationError({"summary": "Write what was learnt."})
    tag_list, link_list = parse_tags(tags), parse_links(links)
    with transaction.atomic():
        locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if locked.status not in CONCLUDABLE:
            raise ValidationError({"outcome": f"'{locked.key}' is {locked.status}: only a completed experiment "
                                              "gets a conclusion."})
        conclusion = Conclusion.objects.filter(experiment=locked).first() or Conclusion(experiment=locked)
        conclusion.outcome = outcome
        conclusion.summary = summary
        conclusion.tags = f",{','.join(tag_list)}," if tag_list else ""
        conclusion.links = link_list
        conclusion.updated_by = user if getattr(user, "pk", None) else None
        conclusion._history_user = conclusion.updated_by
        conclusion.save()
    return conclusion


# --- the library ------------------------------------------------------------------------------------

@dataclass
class LibraryFilters:
    tag: str = ""
    outcome: str = ""
    metric: str = ""
    owner: str = ""
    since: date | None = None
    until: date | None = None
    q: str = ""


def parse_filters(query) -> tuple[LibraryFilters, dict[str, str]]:
    """Filters from a query string, and errors per parameter (an unparseable date is named)."""
    f = LibraryFilters(
        tag=(query.get("tag") or "").strip().lower(), outcome=(query.get("outcome") or "").strip(),
        metric=(query.get("metric") or "").strip(), owner=(query.get("owner") or "").strip(),
        q=(query.get("q") or "").strip(),
    )
    errors: dict[str, str] = {}
    if f.outcome and f.outcome not in Conclusion.Outcome.values:
        errors["outcome"] = f"Choose one of {', '.join(Conclusion.Outcome.values)}."
        f.outcome = ""
    for name in ("from", "to"):
        raw = (query.get(name) or "").strip()
        if not raw:
            continue
        try:
            value = date.fromisoformat(raw)
        except ValueError:
            errors[name] = "Enter a date YYYY-MM-DD."
            continue
        if name == "from":
            f.since = value
        else:
            f.until = value
    return f, errors


def library_queryset(f: LibraryFilters) -> QuerySet[Experiment]:
    """Completed experiments (concluded or not) matching the filters, newest end first.

    Date filters apply to when the experiment ended (UTC days, both inclusive).
    """
    qs = (Experiment.objects.filter(status__in=CONCLUDABLE)
          .select_related("owner", "conclusion", "shipped_variant").order_by("-ended_at", "key"))
    if f.tag:
        qs = qs.filter(conclusion__tags__icontains=f",{f.tag},")
    if f.outcome:
        qs = qs.filter(conclusion__outcome=f.outcome)
    if f.metric:
        qs = qs.filter(experiment_metrics__metric__key=f.metric,
                       experiment_metrics__role=ExperimentMetric.Role.PRIMARY)
    if f.owner:
        qs = qs.filter(owner__username=f.owner)
    if f.since:
        qs = qs.filter(ended_at__gte=_day_start(f.since))
    if f.until:
        qs = qs.filter(ended_at__lt=_day_start(f.until, next_day=True))
    if f.q:
        qs = qs.filter(Q(key__icontains=f.q) | Q(name__icontains=f.q) | Q(hypothesis__icontains=f.q)
                       | Q(conclusion__summary__icontains=f.q))
    return qs.distinct()


def _day_start(day: date, *, next_day: bool = False) -> datetime:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start + timedelta(days=1) if next_day else start


def _latest_payloads(experiments: list[Experiment]) -> dict[int, dict[str, Any]]:
    """The newest snapshot payload of each experiment's last phase (one query per experiment,
    bounded by the page size)."""
    out = {}
    for e in experiments:
        snap = (ReportSnapshot.objects.filter(experiment=e, phase=e.current_phase)
                .order_by("-computed_at", "-id").only("payload").first())
        if snap is not None:
            out[e.pk] = snap.payload
    return out


def _primary_lift(payload: dict[str, Any], shipped: str | None) -> dict[str, Any] | None:
    """The first primary metric's relative lift of the shipped variant (else the best treatment)."""
    metric = next((m for m in payload.get("metrics") or [] if m.get("role") == "primary"), None)
    if metric is None:
        return None
    treated = [v for v in metric.get("variants") or [] if not v.get("is_control")
               and _finite((v.get("lift") or {}).get("relative"))]
    if not treated:
        return None
    chosen = next((v for v in treated if v.get("variant") == shipped), None) or max(
        treated, key=lambda v: v["lift"]["relative"] * (-1 if metric.get("direction") == "decrease" else 1))
    ci = (chosen.get("lift") or {}).get("ci_relative") or [None, None]
    return {"metric": metric.get("metric"), "name": metric.get("name") or metric.get("metric"),
            "variant": chosen.get("variant"), "relative": chosen["lift"]["relative"],
            "low": ci[0] if _finite(ci[0]) else None, "high": ci[1] if _finite(ci[1]) else None}


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def library_rows(experiments: list[Experiment]) -> list[dict[str, Any]]:
    """One row per experiment: decision, primary lift with interval, conclusion."""
    payloads = _latest_payloads(experiments)
    rows = []
    for e in experiments:
        payload = payloads.get(e.pk) or {}
        conclusion = getattr(e, "conclusion", None) if _has_conclusion(e) else None
        rows.append({
            "experiment": e,
            "decision": payload.get("decision") or {},
            "lift": _primary_lift(payload, e.shipped_variant.key if e.shipped_variant_id else None),
            "conclusion": conclusion,
        })
    return rows


def _has_conclusion(e: Experiment) -> bool:
    try:
        return e.conclusion is not None
    except Conclusion.DoesNotExist:
        return False


def library_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Win rate and the cumulative measured impact per primary metric.

    * Win rate: won / (won + lost + inconclusive); invalid experiments measured nothing and are
      left out (they are counted separately).
    * Impact: per primary metric, the sum of the measured relative lifts of the won experiments
      (additive, not compounded), with an interval that treats the experiments' estimates as
      independent and normal (half-widths added in quadrature). Past lifts need not persist: it is
      what was measured, not a forecast.
    """
    outcomes = {o: 0 for o in Conclusion.Outcome.values}
    impact: dict[str, dict[str, Any]] = {}
    for row in rows:
        c = row["conclusion"]
        if c is None:
            continue
        outcomes[c.outcome] += 1
        lift = row["lift"]
        if c.outcome != Conclusion.Outcome.WON or lift is None:
            continue
        m = impact.setdefault(lift["metric"], {"metric": lift["metric"], "name": lift["name"], "wins": 0,
                                               "relative": 0.0, "var": 0.0, "complete": True})
        m["wins"] += 1
        m["relative"] += lift["relative"]
        if lift["low"] is not None and lift["high"] is not None:
            m["var"] += ((lift["high"] - lift["low"]) / 2) ** 2
        else:
            m["complete"] = False
    decided = outcomes["won"] + outcomes["lost"] + outcomes["inconclusive"]
    for m in impact.values():
        half = math.sqrt(m.pop("var"))
        complete = m.pop("complete")
        m["low"], m["high"] = (m["relative"] - half, m["relative"] + half) if complete else (None, None)
    return {
        "concluded": sum(outcomes.values()),
        "outcomes": outcomes,
        "win_rate": outcomes["won"] / decided if decided else None,
        "impact": sorted(impact.values(), key=lambda m: m["metric"]),
    }
