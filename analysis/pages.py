"""The analyst's report pages: server-rendered, for any logged-in person with a role.

Reading needs ``experiments.view_report`` (every role), downloads ``export_report`` (PM and
analyst), recomputing ``recompute_report`` (analyst). People without admin access log in at
/login/.

/reports/                 experiments with status, days running and the headline result
/reports/<key>/           the full report of the latest (or ``?at=``) snapshot
/reports/<key>/refresh/   POST: recompute now
/reports/<key>/export.csv, export.json   downloads for a logged-in person (the API needs a key)

Numbers are formatted here (not in templates) so the templates stay plain.
"""
from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from experiments.models import Experiment

from . import charts, conclusions, daily_charts, selectors, sharing, tasks
from .models import Conclusion, ShareLink
from .report_api import (
    RESULTS_PARAMS,
    csv_response,
    find_snapshot,
    parse_phase,
    results_body,
    results_for,
    unknown_params,
    window_csv_response,
)

RECOMMENDATIONS = {
    "ship": ("Ship", "ship"),
    "do_not_ship": ("Do not ship", "do-not-ship"),
    "keep_running": ("Keep running", "keep-running"),
    "invalid_srm": ("Invalid: sample ratio mismatch", "invalid"),
}
ROLE_ORDER = {"primary": 0, "guardrail": 1, "secondary": 2}
MAX_HISTORY_CHARTS = 10
MAX_METRICS_SHOWN = 30  # ?metrics=all shows every metric


# --- formatting -----------------------------------------------------------------------------------

def _ok(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def fmt_mean(x: Any, kind: str) -> str:
    if not _ok(x):
        return "–"
    if kind == "conversion":
        return f"{x:.2%}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.1f}"


def fmt_abs(x: Any, kind: str) -> str:
    if not _ok(x):
        return "–"
    if kind == "conversion":
        return f"{x * 100:+.2f} pp"
    return f"{x:+,.3g}" if abs(x) < 1000 else f"{x:+,.0f}"


def fmt_rel(x: Any) -> str:
    return f"{x:+.1%}" if _ok(x) else "–"


def fmt_ci(pair: Any, fn) -> str:
    if isinstance(pair, list | tuple) and len(pair) == 2 and _ok(pair[0]) and _ok(pair[1]):
        return f"{fn(pair[0])} to {fn(pair[1])}"
    return ""


def fmt_p(p: Any) -> str:
    if not _ok(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_prob(x: Any) -> str:
    if not _ok(x):
        return "–"
    if x > 0.999:
        return ">99.9%"
    if x < 0.001:
        return "<0.1%"
    return f"{x:.1%}"


def fmt_days(x: Any) -> str:
    if not _ok(x):
        return "–"
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


# --- presentation ---------------------------------------------------------------------------------

def _variant_row(v: dict[str, Any], kind: str) -> dict[str, Any]:
    lift = v.get("lift") or {}
    verdict = v.get("verdict")
    tone = ""
    if v.get("guardrail_alert") or (v.get("significant") and verdict == "worse"):
        tone = "bad"
    elif v.get("significant") and verdict == "better":
        tone = "good"
    cuped = v.get("cuped") or {}
    seq = v.get("sequential") or {}
    ni = v.get("non_inferiority") or {}
    early = bool(v.get("early_look"))
    return {
        "variant": v.get("variant"),
        "is_control": bool(v.get("is_control")),
        "status": v.get("status"),
        "reason": v.get("reason"),
        "units": f"{v['units']:,}" if isinstance(v.get("units"), int) else "–",
        "mean": fmt_mean(v.get("mean"), kind),
        "mean_adjusted": fmt_mean(v.get("mean_adjusted"), kind) if "mean_adjusted" in v else "",
        "value_ci": fmt_ci(v.get("ci"), lambda x: fmt_mean(x, kind)),  # quantile metrics
        "lift_abs": fmt_abs(lift.get("absolute"), kind),
        "ci_abs": fmt_ci(lift.get("ci_absolute"), lambda x: fmt_abs(x, kind)),
        "lift_rel": fmt_rel(lift.get("relative")),
        "ci_rel": fmt_ci(lift.get("ci_relative"), fmt_rel),
        "p_value": fmt_p(v.get("p_value")),
        "p_adjusted": fmt_p(v.get("p_value_adjusted")),
        "chance": fmt_prob(v.get("chance_to_beat_control")),
        "significant": bool(v.get("significant")),
        "verdict": verdict,
        "guardrail_alert": bool(v.get("guardrail_alert")),
        "tone": tone,
        "cuped": (f"CUPED: variance −{cuped['variance_reduction']:.0%}"
                  if cuped.get("applied") and _ok(cuped.get("variance_reduction")) else ""),
        "sequential": "always-valid (sequential)" if v.get("inference") == "sequential" else "",
        "early_look": early,
        "would_be_significant": bool(v.get("would_be_significant")),
        "always_valid_ci": fmt_ci(seq.get("ci_relative"), fmt_rel) if early else "",
        "non_inferiority": ni.get("text") or "",
        "ni_status": ni.get("status") or "",
        "test": "Fisher's exact test" if v.get("test") == "fisher_exact" else "",
        "warnings": [str(w) for w in v.get("warnings") or []],
    }


def present_metrics(payload: dict[str, Any], history: list[dict[str, Any]],
                    limit: int | None = None) -> list[dict[str, Any]]:
    """Metrics in role order; with ``limit`` only the first ones are rendered in full (a page of
    200 metrics x 50 variants would be 10,000 table rows; the rest is a click or a CSV away)."""
    out = []
    metrics = sorted(payload.get("metrics") or [], key=lambda m: ROLE_ORDER.get(m.get("role"), 9))
    for m in metrics[:limit]:
        kind = m.get("kind", "")
        out.append({
            "key": m.get("metric"),
            "name": m.get("name") or m.get("metric"),
            "role": m.get("role"),
            "kind": kind,
            "direction": m.get("direction"),
            "status": m.get("status"),
            "reason": m.get("reason"),
            "rows": [_variant_row(v, kind) for v in m.get("variants") or []],
            "interval_svg": mark_safe(charts.metric_interval_chart(m)),  # noqa: S308 - escaped in charts
            "interval_table": mark_safe(charts.interval_table(m)),  # noqa: S308 - escaped in charts
            "history_svg": mark_safe(charts.cumulative_lift_chart(history, m.get("metric")))  # noqa: S308
            if len(history) > 1 and _charted(history, m.get("metric")) else "",
            "history_table": mark_safe(charts.lift_history_table(  # noqa: S308 - escaped in charts
                history, m.get("metric"), distinct_labels([h["computed_at"] for h in history])))
            if len(history) > 1 and _charted(history, m.get("metric")) else "",
            "mean_label": "Rate" if kind == "conversion" else (m.get("quantile_label") or "Mean"),
            "alert": any(v.get("guardrail_alert") for v in m.get("variants") or []),
        })
    return out


def distinct_labels(times: list[datetime]) -> list[str]:
    """Short labels for snapshot times ("Dec 2 01:04"), with seconds where two share a minute and
    a number where they share a second too, so no two recomputations look the same."""
    minute = [f"{t:%b} {t.day} {t:%H:%M}" for t in times]
    labels = [f"{m}:{t:%S}" if minute.count(m) > 1 else m for m, t in zip(minute, times, strict=True)]
    out, seen = [], {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label} (#{seen[label]})")
    return out


def partial_day(data_to: datetime | None):
    """The UTC day the data stops in when it stops before that day's end (else None)."""
    if data_to is None:
        return None
    end = data_to.astimezone(UTC)
    if (end.hour, end.minute, end.second, end.microsecond) == (0, 0, 0, 0):
        return None
    return end.date()


def _charted(history: list[dict[str, Any]], key: Any) -> bool:
    return any(key in ((h.get("series") or {}).get("metrics") or {}) for h in history)


def present_segments(payload: dict[str, Any], kinds: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for attribute, values in (payload.get("segments") or {}).items():
        rows = []
        for value, metrics in values.items():
            for m in metrics:
                kind = kinds.get(m.get("metric"), "")
                for v in m.get("variants") or []:
                    rows.append({"value": value, "metric": m.get("name") or m.get("metric"),
                                 **_variant_row(v, kind), "p_segments": fmt_p(v.get("p_value_segments"))})
        out.append({"attribute": attribute, "rows": rows})
    return out


def present_health(payload: dict[str, Any], experiment: Experiment) -> dict[str, Any]:
    srm = payload.get("srm") or {}
    power = payload.get("power") or {}
    progress = power.get("progress")
    return {
        "srm_passed": bool(srm.get("passed", True)),
        "srm_checked": srm.get("checked", True),
        "srm_message": srm.get("message") or "",
        "srm_p": fmt_p(srm.get("p_value")),
        "counts": [{"variant": k, "units": n} for k, n in (srm.get("counts") or {}).items()],
        "units": f"{power.get('units_so_far') or 0:,}",
        "planned": f"{power['planned_sample_size']:,}" if power.get("planned_sample_size") else None,
        "progress_pct": max(0.0, min(100.0, progress * 100)) if _ok(progress) else None,
        "progress": fmt_prob(progress) if _ok(progress) else "–",
        "days_left": fmt_days(power.get("days_left")),
        "power_reached": fmt_prob(power.get("power_reached")) if _ok(power.get("power_reached")) else "–",
        "mde_now": fmt_rel(power.get("mde_reached_relative")).lstrip("+"),
        "planned_days": experiment.planned_duration_days,
    }


def _days_running(experiment: Experiment) -> float | None:
    if not experiment.started_at:
        return None
    end = experiment.ended_at or (experiment.paused_at if experiment.status == Experiment.Status.PAUSED else None)
    return ((end or timezone.now()) - experiment.started_at).total_seconds() / 86400


# --- views --------------------------------------------------------------------------------------

def _require(request: HttpRequest, permission: str) -> None:
    """403 for a logged-in person without the permission (login_required already sent others away)."""
    if not request.user.has_perm(permission):
        raise PermissionDenied(f"This needs the '{permission.split('.', 1)[1]}' permission (a role).")


def visible_experiments(user) -> list[dict[str, Any]]:
    """The report list for ``user``: every experiment for a role holder; nothing otherwise."""
    if not user.has_perm("experiments.view_report"):
        return []
    return selectors.experiments_overview()


@login_required
@require_GET
def report_list(request: HttpRequest) -> HttpResponse:
    _require(request, "experiments.view_report")
    rows = []
    for item in visible_experiments(request.user):
        decision = item["decision"] or {}
        label, css = RECOMMENDATIONS.get(decision.get("recommendation"), ("No report yet", "none"))
        rows.append({
            **item,
            "days": fmt_days(item["days_running"]),
            "label": label,
            "css": css,
            "headline": decision.get("headline") or "",
        })
    return render(request, "analysis/report_list.html", {"rows": rows})


@login_required
@require_GET
def report_detail(request: HttpRequest, key: str) -> HttpResponse:
    _require(request, "experiments.view_report")
    experiment = get_object_or_404(
        Experiment.objects.select_related("layer", "owner").prefetch_related("variants", "targeting_rules"), key=key
    )
    context = _detail_context(request, experiment)
    if request.user.has_perm(sharing.SHARE_PERMISSION):
        context["share_links"] = sharing.active_links(experiment)
        context["can_share"] = True
    return render(request, "analysis/report_detail.html", context)


def _detail_context(request: HttpRequest, experiment: Experiment, *, shared: bool = False) -> dict[str, Any]:
    """The report page's context (also for a shared read-only link, ``shared=True``: no actions,
    no exports, no conclusion editing)."""
    raw_at = request.GET.get("at")
    try:
        phase = parse_phase(experiment, request.GET.get("phase"))
    except ValueError as exc:  # a bad phase: say so, show the current one
        messages.error(request, str(exc))
        phase = experiment.current_phase
    raw_phase = str(phase) if phase != experiment.current_phase else None
    snapshot, error, _ = find_snapshot(experiment, raw_at, raw_phase)
    if error and raw_at is not None:  # a bad or too early ``at``: say so, show the latest
        messages.error(request, error["at"][0] if "at" in error else error["detail"])
        raw_at = None
        snapshot = selectors.latest_snapshot(experiment, phase=phase)
    context: dict[str, Any] = {
        "phase": phase,
        "phase_query": f"phase={phase}&" if raw_phase else "",
        "phases": selectors.phases(experiment),
        "experiment": experiment,
        "variants": list(experiment.variants.all()),
        "targeting": list(experiment.targeting_rules.all()),
        "days_running": fmt_days(_days_running(experiment)),
        "snapshot": snapshot,
        "times": _time_links(selectors.snapshot_times(experiment, limit=30, phase=phase)),
        "at": raw_at if snapshot is not None and raw_at else "",
        "pending": _pending(experiment),
        "conclusion": Conclusion.objects.filter(experiment=experiment).first(),
        "can_conclude": experiment.status in conclusions.CONCLUDABLE and not shared
        and request.user.has_perm("analysis.change_conclusion"),
        "shared": shared,
    }
    if snapshot is not None:
        payload = snapshot.payload
        # The history charts are drawn for the decision metrics only (primary and guardrail, at
        # most MAX_HISTORY_CHARTS), and only their few numbers are loaded (bounded page cost).
        show_all = request.GET.get("metrics") == "all"
        charted = [m.get("metric") for m in payload.get("metrics") or []
                   if m.get("role") in ("primary", "guardrail")][:MAX_HISTORY_CHARTS]
        history = selectors.snapshot_history(experiment, until=snapshot.computed_at, metrics=charted,
                                               phase=phase)
        decision = payload.get("decision") or {}
        label, css = RECOMMENDATIONS.get(decision.get("recommendation"), ("Unknown", "none"))
        kinds = {m.get("metric"): m.get("kind", "") for m in payload.get("metrics") or []}
        params = {**({"phase": raw_phase} if raw_phase else {}), **({"at": raw_at} if raw_at else {})}
        query = f"?{urlencode(params)}" if params else ""
        variant_keys = [v.key for v in context["variants"]]
        today = partial_day(snapshot.data_to)
        context.update(
            payload=payload,
            decision={**decision, "label": label, "css": css},
            health=present_health(payload, experiment),
            metrics=present_metrics(payload, history, limit=None if show_all else MAX_METRICS_SHOWN),
            hidden_metrics=0 if show_all else max(0, len(payload.get("metrics") or []) - MAX_METRICS_SHOWN),
            all_metrics_url=f"?{urlencode({**({'at': raw_at} if raw_at else {}), 'metrics': 'all'})}",
            segments=present_segments(payload, kinds),
            daily=[{**d, **{k: mark_safe(d[k]) for k in ("value_svg", "lift_svg", "value_table", "lift_table")}}  # noqa: S308 - escaped in charts
                   for d in daily_charts.present(payload, limit=None if show_all else MAX_HISTORY_CHARTS)],
            daily_series=payload.get("daily_series") or {},
            exposures_svg=mark_safe(charts.daily_exposures_chart(  # noqa: S308 - escaped in charts
                payload.get("daily_exposures") or [], variants=variant_keys, width=820, partial_day=today,
                partial_label=f"partial day (data until {snapshot.data_to:%H:%M} UTC)" if today else "")),
            exposures_table=mark_safe(charts.daily_exposures_table(  # noqa: S308 - escaped in charts
                payload.get("daily_exposures") or [], variants=variant_keys, partial_day=today)),
            history_count=len(history),
            ci_level=f"{1 - payload['alpha']:.0%}" if _ok(payload.get("alpha")) else "",
            csv_url=reverse("report-export-csv", args=[experiment.key]) + query,
            json_url=reverse("report-export-json", args=[experiment.key]) + query,
            api_url=reverse("experiment-results", args=[experiment.key]) + (f"?phase={phase}" if raw_phase else ""),
            stale=(snapshot.computed_at < timezone.now() - timedelta(hours=1)) and not raw_at,
        )
    return context


@login_required
@require_POST
def share_create(request: HttpRequest, key: str) -> HttpResponse:
    _require(request, sharing.SHARE_PERMISSION)
    experiment = get_object_or_404(Experiment, key=key)
    try:
        link = sharing.create_link(experiment, days=request.POST.get("days", "7"), user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        url = request.build_absolute_uri(sharing.url_of(link))
        messages.success(request, f"Read-only link, valid until {link.expires_at:%b %d, %Y %H:%M} UTC: {url}")
    return redirect(reverse("report-detail", args=[experiment.key]) + "#sharing")


@login_required
@require_POST
def share_revoke(request: HttpRequest, key: str, link_id: int) -> HttpResponse:
    _require(request, sharing.SHARE_PERMISSION)
    link = get_object_or_404(ShareLink, pk=link_id, experiment__key=key)
    sharing.revoke(link, user=request.user)
    messages.success(request, "The link was revoked: it no longer opens the report.")
    return redirect(reverse("report-detail", args=[key]) + "#sharing")


@require_GET
def shared_report(request: HttpRequest, signed: str) -> HttpResponse:
    """The report, read-only, for whoever holds a live link (no account)."""
    try:
        link = sharing.resolve(signed)
    except sharing.LinkInvalid as exc:
        response = render(request, "analysis/share_invalid.html", {"reason": str(exc)}, status=410
                          if "expired" in str(exc) or "revoked" in str(exc) else 404)
    else:
        experiment = (Experiment.objects.select_related("layer", "owner")
                      .prefetch_related("variants", "targeting_rules").get(pk=link.experiment_id))
        context = _detail_context(request, experiment, shared=True)
        context["share_expires"] = link.expires_at
        response = render(request, "analysis/report_detail.html", context)
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"  # the token must not leak through links followed
    response["Cache-Control"] = "private, no-store"
    return response


def _time_links(times: list[datetime]) -> list[dict[str, Any]]:
    return [{"at": t, "label": label} for t, label in zip(times, distinct_labels(times), strict=True)]


def _pending(experiment: Experiment) -> str | None:
    task_id = cache.get(tasks.pending_key(experiment.pk))
    if task_id and tasks.task_state(task_id) not in ("SUCCESS", "FAILURE", "REVOKED"):
        return task_id
    return None


@login_required
@require_POST
def report_refresh(request: HttpRequest, key: str) -> HttpResponse:
    _require(request, "experiments.recompute_report")
    experiment = get_object_or_404(Experiment, key=key)
    try:
        phase = parse_phase(experiment, request.POST.get("phase"))
    except ValueError:
        phase = experiment.current_phase
    try:
        ticket = tasks.request_refresh(experiment, phase=phase)
    except tasks.QueueUnavailable:
        messages.error(request, "The task queue is unavailable; try again in a moment.")
    else:
        if ticket.state == "SUCCESS":
            messages.success(request, "The report was recomputed.")
        elif ticket.state == "FAILURE":
            status = tasks.task_status(ticket.task_id) or {}
            messages.error(request, f"The recomputation failed: {status.get('error') or 'see the logs'}")
        elif ticket.deduplicated:
            messages.info(request, f"A recomputation is already under way (task {ticket.task_id}); reload shortly.")
        else:
            messages.info(request, f"Recomputation queued (task {ticket.task_id}); reload in a moment.")
    if phase != experiment.current_phase:
        return redirect(reverse("report-detail", args=[experiment.key]) + f"?phase={phase}")
    return redirect("report-detail", key=experiment.key)


@login_required
@require_GET
def export_csv(request: HttpRequest, key: str) -> HttpResponse:
    _require(request, "experiments.export_report")
    if error := unknown_params(request.GET, RESULTS_PARAMS):
        return JsonResponse(error, status=400)
    experiment = get_object_or_404(Experiment, key=key)
    found, error, code = results_for(experiment, request.GET)
    if found is None:
        return JsonResponse(error, status=code)
    return window_csv_response(experiment, found) if isinstance(found, dict) else csv_response(found)


@login_required
@require_GET
def export_json(request: HttpRequest, key: str) -> HttpResponse:
    _require(request, "experiments.export_report")
    if error := unknown_params(request.GET, RESULTS_PARAMS):
        return JsonResponse(error, status=400)
    experiment = get_object_or_404(Experiment, key=key)
    found, error, code = results_for(experiment, request.GET)
    if found is None:
        return JsonResponse(error, status=code)
    body = found if isinstance(found, dict) else results_body(found)
    response = HttpResponse(json.dumps(body, indent=2, allow_nan=False), content_type="application/json")
    response["Content-Disposition"] = f'inline; filename="{experiment.key}-results.json"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def conclusion_edit(request: HttpRequest, key: str) -> HttpResponse:
    """Write or edit the conclusion of a completed experiment (analysts and PMs)."""
    _require(request, "analysis.change_conclusion")
    experiment = get_object_or_404(Experiment, key=key)
    current = Conclusion.objects.filter(experiment=experiment).first()
    errors: dict[str, list[str]] = {}
    values = {
        "outcome": current.outcome if current else "",
        "summary": current.summary if current else "",
        "tags": ", ".join(current.tag_list) if current else "",
        "links": "\n".join(current.links) if current else "",
    }
    if request.method == "POST":
        values = {name: request.POST.get(name, "") for name in values}
        try:
            conclusions.save_conclusion(experiment, user=request.user, **values)
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            messages.success(request, "The conclusion was saved.")
            return redirect(reverse("report-detail", args=[experiment.key]) + "#conclusion")
    elif experiment.status not in conclusions.CONCLUDABLE:
        errors = {"outcome": [f"'{experiment.key}' is {experiment.status}: only a completed experiment "
                              "gets a conclusion."]}
    return render(request, "analysis/conclusion_form.html", {
        "experiment": experiment, "values": values, "errors": errors,
        "outcomes": Conclusion.Outcome.choices,
    }, status=400 if errors and request.method == "POST" else 200)


LIBRARY_PAGE = 100


@login_required
@require_GET
def library(request: HttpRequest) -> HttpResponse:
    """Past experiments and what they taught: filters, rows, win rate and measured impact."""
    _require(request, "experiments.view_report")
    filters, errors = conclusions.parse_filters(request.GET)
    for name, message in errors.items():
        messages.error(request, f"{name}: {message}")
    experiments = list(conclusions.library_queryset(filters)[:LIBRARY_PAGE])
    rows = conclusions.library_rows(experiments)
    for row in rows:
        label, css = RECOMMENDATIONS.get(row["decision"].get("recommendation"), ("No report", "none"))
        row.update(label=label, css=css)
        lift = row["lift"]
        if lift:
            row["lift_text"] = f"{fmt_rel(lift['relative'])} ({fmt_ci([lift['low'], lift['high']], fmt_rel)})"
    summary = conclusions.library_summary(rows)
    for m in summary["impact"]:
        m["text"] = fmt_rel(m["relative"])
        m["ci"] = fmt_ci([m["low"], m["high"]], fmt_rel) if m["low"] is not None else "n/a"
    return render(request, "analysis/library.html", {
        "rows": rows, "summary": summary, "filters": filters, "outcomes": Conclusion.Outcome.choices,
        "win_rate": fmt_prob(summary["win_rate"]) if summary["win_rate"] is not None else "n/a",
        "truncated": len(experiments) == LIBRARY_PAGE,
        "metrics": list(Experiment.objects.filter(status__in=conclusions.CONCLUDABLE)
                        .values_list("experiment_metrics__metric__key", flat=True).distinct().order_by(
                            "experiment_metrics__metric__key")),
    })


def home(request: HttpRequest) -> HttpResponse:
    return redirect("report-list")


urlpatterns = [
    path("", home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="analysis/login.html"), name="login"),
    path("reports/", report_list, name="report-list"),
    path("reports/library/", library, name="report-library"),  # before <slug:key>: "library" is a slug
    path("reports/<slug:key>/conclusion/", conclusion_edit, name="report-conclusion"),
    path("reports/<slug:key>/share/", share_create, name="report-share"),
    path("reports/<slug:key>/share/<int:link_id>/revoke/", share_revoke, name="report-share-revoke"),
    path("share/<str:signed>/", shared_report, name="report-shared"),
    path("reports/<slug:key>/", report_detail, name="report-detail"),
    path("reports/<slug:key>/refresh/", report_refresh, name="report-refresh"),
    path("reports/<slug:key>/export.csv", export_csv, name="report-export-csv"),
    path("reports/<slug:key>/export.json", export_json, name="report-export-json"),
]
