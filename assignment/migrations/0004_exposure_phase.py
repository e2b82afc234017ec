"""Exposures belong to a phase: one row per (experiment, phase, unit).

Existing rows are phase 1 (phases did not exist). The column is added with a constant default
(PostgreSQL 11+ adds it without rewriting the table); the new unique constraint is created
before the old one is dropped, so uniqueness is enforced at every moment. Creating the unique
index scans the table and blocks writes to it meanwhile: on a large table, pause the exposure
flush task for the migration (exposures wait in Redis, see docs/operations.md).
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('assignment', '0003_protect_data_on_delete'),
    ]

    operations = [
        migrations.AddField(
            model_name='exposure',
            name='phase',
            field=models.PositiveSmallIntegerField(default=1, help_text="The experiment's phase at this exposure (one row per unit and phase)."),
        ),
        migrations.AddConstraint(
            model_name='exposure',
            constraint=models.UniqueConstraint(fields=('experiment', 'phase', 'unit_id'), name='unique_exposure_phase_unit'),
        ),
        migrations.RemoveConstraint(
            model_name='exposure',
            name='unique_exposure_unit',
        ),
    ]
