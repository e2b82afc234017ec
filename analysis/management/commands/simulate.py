"""Simulate users of an experiment: exposures and outcome events written in bulk, then a report.

    python manage.py simulate --experiment checkout-button --units 20000 --days 14 --lift 0.1

Every unit has a latent propensity that drives both its behaviour before its first exposure
(the pre-period CUPED uses) and after it, so CUPED has something to remove. The events of the
experiment's primary metrics get the true ``--lift`` in the treatment variants, guardrail events
``--guardrail-lift`` (0: the guardrail holds), other events ``--secondary-lift``. Unit and event
ids are deterministic (prefix, experiment, unit number), so running the same command again
writes nothing new; ``--reset`` deletes earlier simulated rows first.

With ``ANALYTICS_BACKEND=clickhouse`` the events go straight into ClickHouse (where reports read
them) and the exposures into both stores, as the mirror would put them; ``--reset`` deletes from
ClickHouse too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from analysis import clickhouse, stream
from analysis.dialects import DIALECTS
from analysis.ingestion import write_events
from analysis.models import Event
from assignment.models import Exposure
from experiments.models import Experiment, ExperimentMetric, TargetingRule

COUNTRIES = (["US", "GB", "DE", "FR", "BR", "IN", "CN", "JP"], [0.34, 0.12, 0.11, 0.08, 0.1, 0.1, 0.1, 0.05])
PLATFORMS = (["ios", "android", "web"], [0.38, 0.32, 0.30])
PLANS = (["free", "pro", "team"], [0.7, 0.22, 0.08])
PRE_ACTIVITY = 3.0  # the pre-period is busier than the post-period (returning users)
PRE_PERIOD_DAYS = 6.5  # inside the shortest usual conversion window (7 days) CUPED looks back


@dataclass
class SimulationResult:
    units: int
    exposures_written: int
    events_generated: int
    events_written: int
    start: datetime
    end: datetime


def _attribute_pools(experiment: Experiment) -> dict[str, tuple[list, list[float]]]:
    """Attribute values to draw from; targeting rules that list values narrow them."""
    pools = {"country": COUNTRIES, "platform": PLATFORMS, "plan": PLANS}
    for rule in experiment.targeting_rules.all():
        values = rule.values if isinstance(rule.values, list) else [rule.values]
        if rule.operator in (TargetingRule.Operator.IN, TargetingRule.Operator.EQUALS) and values:
            pools[rule.attribute] = (list(values), [1.0 / len(values)] * len(values))
    return pools


def _event_plan(experiment: Experiment, baseline: float, guardrail_rate: float, secondary_rate: float,
                lift: float, guardrail_lift: float, secondary_lift: float) -> dict[str, tuple[float, float]]:
    """event name -> (base probability per unit, relative lift in treatment)."""
    plan: dict[str, tuple[float, float]] = {}
    rank = {ExperimentMetric.Role.PRIMARY: 0, ExperimentMetric.Role.GUARDRAIL: 1, ExperimentMetric.Role.SECONDARY: 2}
    links = sorted(experiment.experiment_metrics.select_related("metric"), key=lambda em: rank.get(em.role, 3))
    for em in links:
        for name in filter(None, [em.metric.event, em.metric.denominator_event]):
            if name in plan:
                continue
            if em.role == ExperimentMetric.Role.PRIMARY:
                plan[name] = (baseline, lift)
            elif em.role == ExperimentMetric.Role.GUARDRAIL:
                plan[name] = (guardrail_rate, guardrail_lift)
            else:
                plan[name] = (secondary_rate, secondary_lift)
    return plan


def _arrival_offsets(rng: np.random.Generator, n: int, days: float) -> np.ndarray:
    """Seconds after the start, with a weekly rhythm and slowly growing traffic."""
    out = np.empty(0)
    while out.size < n:
        t = rng.uniform(0, days, size=n * 2)
        weight = (0.8 + 0.2 * np.sin(2 * np.pi * t / 7.0)) * (0.85 + 0.15 * t / max(days, 1e-9))
        out = np.concatenate([out, t[rng.uniform(0, 1, size=t.size) < weight]])
    return np.sort(out[:n]) * 86400.0


def simulate(
    experiment: Experiment,
    *,
    units: int = 20_000,
    days: float = 14,
    lift: float = 0.1,
    baseline: float = 0.1,
    guardrail_rate: float = 0.01,
    guardrail_lift: float = 0.0,
    secondary_rate: float = 0.2,
    secondary_lift: float = 0.0,
    drop_treatment: float = 0.0,
    seed: int = 1,
    end: datetime | None = None,
    prefix: str = "sim",
    chunk: int = 5000,
    progress: bool = True,
    backdate: bool = True,
) -> SimulationResult:
    """Generate and write the data; see the module docstring."""
    if units < 1 or days <= 0:
        raise ValueError("units and days must be positive")
    variants = list(experiment.variants.all())
    if not variants or not any(v.is_control for v in variants):
        raise ValueError(f"experiment '{experiment.key}' needs variants with a control")
    rng = np.random.default_rng(seed)
    end = end or timezone.now()
    start = end - timedelta(days=days)
    weights = np.array([float(v.weight) for v in variants])
    weights = weights / weights.sum()
    plan = _event_plan(experiment, baseline, guardrail_rate, secondary_rate, lift, guardrail_lift, secondary_lift)
    pools = _attribute_pools(experiment)
    received = timezone.now()

    # Everything random is drawn up front, in a fixed order, so the seed alone fixes the data.
    offsets = _arrival_offsets(rng, units, days)
    assigned = rng.choice(len(variants), size=units, p=weights)
    # Propensity (mean 1): a quarter of regulars who act often, many who rarely do, with some
    # noise. The same propensity drives the pre-period, which is what makes CUPED work.
    regular = rng.uniform(0, 1, size=units) < 0.25
    propensity = np.where(regular, 3.4, 0.2) * rng.lognormal(mean=-0.045, sigma=0.3, size=units)
    attrs = {name: rng.choice(len(values), size=units, p=np.array(p) / np.sum(p))
             for name, (values, p) in pools.items()}
    keep = np.ones(units, dtype=bool)
    if drop_treatment > 0:
        treated = np.array([not variants[i].is_control for i in assigned])
        keep &= ~(treated & (rng.uniform(0, 1, size=units) < drop_treatment))
    draws = {}
    for name in plan:
        draws[name] = {
            "pre": rng.uniform(0, 1, size=units),
            "post": rng.uniform(0, 1, size=units),
            "pre_delay": rng.uniform(60, PRE_PERIOD_DAYS * 86400, size=units),
            "delay": rng.exponential(36 * 3600, size=units),
            "extra": rng.poisson(0.25, size=units),
            "value": rng.lognormal(mean=3.8, sigma=0.7, size=units),
        }

    to_clickhouse = clickhouse.enabled()
    unit_prefix = f"{prefix}-{experiment.key}-"
    ch_before = _clickhouse_events(unit_prefix) if to_clickhouse else 0
    own = Exposure.objects.filter(experiment=experiment, unit_id__startswith=f"{prefix}-{experiment.key}-")
    exposures_before = own.count()
    events_generated = events_written = 0
    bar = tqdm(total=units, unit="units", desc=f"simulating {experiment.key}", disable=not progress)
    for lo in range(0, units, chunk):
        hi = min(units, lo + chunk)
        exposure_rows, event_rows = [], []
        for i in range(lo, hi):
            if not keep[i]:
                continue
            unit_id = f"{prefix}-{experiment.key}-{i:06d}"
            variant = variants[assigned[i]]
            first_seen = start + timedelta(seconds=float(offsets[i]))
            attributes = {name: pools[name][0][attrs[name][i]] for name in pools}
            exposure_rows.append(Exposure(
                experiment=experiment, variant=variant, unit_id=unit_id, first_seen=first_seen,
                last_seen=min(end, first_seen + timedelta(hours=12)),
                attributes=attributes, phase=experiment.current_phase,
            ))
            u = float(propensity[i])
            for name, (base, effect) in plan.items():
                d = draws[name]
                p_pre = min(0.95, PRE_ACTIVITY * base * u)
                p_post = min(0.95, base * u * (1.0 + (0.0 if variant.is_control else effect)))
                value = round(float(d["value"][i]), 2)
                if d["pre"][i] < p_pre:
                    ts = first_seen - timedelta(seconds=float(d["pre_delay"][i]))
                    event_rows.append((f"{unit_id}:{name}:pre", unit_id, name, value, ts, '{"simulated": true}'))
                if d["post"][i] < p_post:
                    ts = first_seen + timedelta(seconds=float(min(d["delay"][i], 6.5 * 86400)))
                    for k in range(1 + int(d["extra"][i])):
                        at = ts + timedelta(hours=6 * k)
                        if at >= end:
                            break
                        event_rows.append((f"{unit_id}:{name}:{k}", unit_id, name,
                                           round(value * (1 + 0.1 * k), 2), at, '{"simulated": true}'))
        with transaction.atomic():
            Exposure.objects.bulk_create(exposure_rows, ignore_conflicts=True, batch_size=1000)
            if to_clickhouse:
                _insert_clickhouse(exposure_rows, event_rows, received)
            else:
                events_written += write_events(event_rows, received_at=received)
        events_generated += len(event_rows)
        bar.update(hi - lo)
    bar.close()
    exposures_written = own.count() - exposures_before
    if to_clickhouse:
        events_written = _clickhouse_events(unit_prefix) - ch_before
    if backdate and experiment.started_at is not None and experiment.started_at > start:
        # The simulated units arrived from ``start``: make the timeline agree (no history row).
        Experiment.objects.filter(pk=experiment.pk).update(started_at=start)
        experiment.started_at = start
        experiment.phases.filter(number=1, started_at__gt=start).update(started_at=start)
    from analysis.maintenance import refresh_planner_statistics

    refresh_planner_statistics()  # the reports that follow a bulk load need fresh statistics
    return SimulationResult(int(keep.sum()), exposures_written, events_generated, events_written, start, end)


def _q(name: str) -> str:
    return DIALECTS["clickhouse"].quote(name)


def _clickhouse_events(unit_prefix: str) -> int:
    """Distinct events of the simulated units in ClickHouse."""
    events, _ = clickhouse.tables()
    rows = clickhouse.client().query(
        f"SELECT count() FROM {_q(events)} FINAL WHERE startsWith({_q('unit_id')}, %s)",
        parameters=(unit_prefix,)).result_rows
    return int(rows[0][0])


def _insert_clickhouse(exposures: list[Exposure], events: list[tuple], received: datetime) -> None:
    """One chunk into ClickHouse: the stream's own line format, one INSERT per table. Re-running
    the command inserts copies that the tables read once (``analysis.clickhouse``)."""
    from analysis.ingestion import _without_erased

    event_table, exposure_table = clickhouse.tables()
    events = list(_without_erased(events, None)) if events else events  # as write_events does
    clickhouse.insert_lines(event_table, clickhouse.EVENT_COLUMNS, stream.event_lines(events, received))
    rows = [(e.experiment_id, e.variant_id, e.unit_id, e.first_seen.timestamp(), e.attributes,
             e.last_seen.timestamp(), e.phase) for e in exposures]
    clickhouse.insert_lines(exposure_table, clickhouse.EXPOSURE_COLUMNS, stream.exposure_lines(rows))


def reset(experiment: Experiment, prefix: str = "sim") -> tuple[int, int]:
    """Delete the simulated exposures and events of ``experiment`` (from ClickHouse too)."""
    unit_prefix = f"{prefix}-{experiment.key}-"
    events, _ = Event.objects.filter(unit_id__startswith=unit_prefix).delete()
    exposures, _ = Exposure.objects.filter(experiment=experiment, unit_id__startswith=unit_prefix).delete()
    if clickhouse.enabled():
        events = _clickhouse_events(unit_prefix)
        event_table, exposure_table = clickhouse.tables()
        ch = clickhouse.client()
        ch.command(f"DELETE FROM {_q(event_table)} WHERE startsWith({_q('unit_id')}, %s)", parameters=(unit_prefix,))
        ch.command(f"DELETE FROM {_q(exposure_table)} WHERE {_q('experiment_id')} = %s "
                   f"AND startsWith({_q('unit_id')}, %s)", parameters=(experiment.pk, unit_prefix))
    return exposures, events


class Command(BaseCommand):
    help = "Simulate units of an experiment with chosen effects (exposures + events in bulk)."

    def add_arguments(self, parser):
        parser.add_argument("--experiment", default="checkout-button", help="Experiment key.")
        parser.add_argument("--units", type=int, default=20_000, help="Units to simulate.")
        parser.add_argument("--days", type=float, default=14, help="Days of traffic, ending now (or --end).")
        parser.add_argument("--lift", type=float, default=0.1,
                            help="True relative lift of the primary metrics' events in treatment (0.1 = +10 %%).")
        parser.add_argument("--baseline", type=float, default=0.1, help="Primary event probability per unit.")
        parser.add_argument("--guardrail-rate", type=float, default=0.01)
        parser.add_argument("--guardrail-lift", type=float, default=0.0, help="0: the guardrail holds.")
        parser.add_argument("--secondary-rate", type=float, default=0.2)
        parser.add_argument("--secondary-lift", type=float, default=0.0)
        parser.add_argument("--drop-treatment", type=float, default=0.0,
                            help="Share of treatment units lost (0.05 makes a sample ratio mismatch).")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--end", default=None, help="ISO timestamp the traffic ends at (default: now).")
        parser.add_argument("--prefix", default="sim", help="Unit id prefix of the simulated units.")
        parser.add_argument("--chunk", type=int, default=5000, help="Units written per transaction.")
        parser.add_argument("--reset", action="store_true", help="Delete earlier simulated rows first.")
        parser.add_argument("--no-report", action="store_true", help="Don't compute a report afterwards.")
        parser.add_argument("--history", action="store_true", help="Also store one snapshot per past day.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, **options):
        experiment = Experiment.objects.filter(key=options["experiment"]).first()
        if experiment is None:
            raise CommandError(f"No experiment '{options['experiment']}'.")
        for name in ("lift", "guardrail_lift", "secondary_lift"):
            if not math.isfinite(options[name]) or options[name] <= -1:
                raise CommandError(f"--{name.replace('_', '-')} must be a number above -1.")
        for name in ("baseline", "guardrail_rate", "secondary_rate"):
            if not 0 <= options[name] <= 1:
                raise CommandError(f"--{name.replace('_', '-')} must be between 0 and 1.")
        if not 0 <= options["drop_treatment"] < 1:
            raise CommandError("--drop-treatment must be in [0, 1).")
        end = None
        if options["end"]:
            end = parse_datetime(options["end"])
            if end is None:
                raise CommandError("--end must be an ISO timestamp.")
            if timezone.is_naive(end):
                end = end.replace(tzinfo=UTC)
        if options["reset"]:
            exposures, events = reset(experiment, options["prefix"])
            self.stdout.write(f"Deleted {exposures} simulated exposures and {events} events.")
        try:
            result = simulate(
                experiment, units=options["units"], days=options["days"], lift=options["lift"],
                baseline=options["baseline"], guardrail_rate=options["guardrail_rate"],
                guardrail_lift=options["guardrail_lift"], secondary_rate=options["secondary_rate"],
                secondary_lift=options["secondary_lift"], drop_treatment=options["drop_treatment"],
                seed=options["seed"], end=end, prefix=options["prefix"], chunk=max(1, options["chunk"]),
                progress=not options["no_progress"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Simulated {result.units} units of '{experiment.key}' from {result.start:%Y-%m-%d %H:%M} "
            f"to {result.end:%Y-%m-%d %H:%M}: {result.exposures_written} new exposures, "
            f"{result.events_written} new events ({result.events_generated - result.events_written} already there)."
        )
        if not options["no_report"]:
            from analysis.reports import backfill_daily, compute_report

            if options["history"]:
                made = backfill_daily(experiment, days=math.ceil(options["days"]), end=result.end)
                self.stdout.write(f"Stored {made} daily snapshots.")
            snapshot = compute_report(experiment)
            decision = snapshot.payload.get("decision") or {}
            self.stdout.write(f"Report computed: {decision.get('headline', '')}")
