"""Experiments started before phases existed get their phase 1 (with a copy of today's plan)."""

from django.db import migrations


def backfill(apps, schema_editor):
    Experiment = apps.get_model("experiments", "Experiment")
    Phase = apps.get_model("experiments", "Phase")
    for exp in Experiment.objects.filter(started_at__isnull=False).exclude(phases__isnull=False):
        plan = {
            "significance_level": exp.significance_level, "correction": exp.correction,
            "sequential_testing": exp.sequential_testing, "cuped": exp.cuped,
            "planned_sample_size": exp.planned_sample_size, "planned_duration_days": exp.planned_duration_days,
            "segment_attributes": list(exp.segment_attributes or []),
            "variants": [
                {"key": v.key, "weight": f"{v.weight.normalize():f}", "is_control": v.is_control,
                 "payload": v.payload or {}}
                for v in exp.variants.order_by("position", "id")
            ],
            "metrics": [{"metric": em.metric.key, "role": em.role}
                        for em in exp.experiment_metrics.order_by("position", "id")],
            "targeting": [{"attribute": r.attribute, "operator": r.operator, "values": list(r.values or [])}
                          for r in exp.targeting_rules.order_by("position", "id")],
            "traffic_allocation": f"{exp.traffic_allocation.normalize():f}",
            "salt": exp.salt or exp.key,
        }
        Phase.objects.create(
            experiment=exp, number=1, started_at=exp.started_at, ended_at=None, salt=exp.salt or exp.key,
            plan=plan, reason="Experiment started (phase recorded when phases were introduced).",
        )


class Migration(migrations.Migration):

    dependencies = [
        ("experiments", "0006_phases_and_segment_attributes"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
