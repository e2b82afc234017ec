"""PostgreSQL: drop the ``varchar_pattern_ops`` index Django adds next to ``event_id``'s unique one.

Django creates it for ``LIKE 'prefix%'`` lookups on unique CharFields. Nothing queries event ids
by prefix, and with random (UUID) ids it was the most expensive index to maintain: dropping it
raised raw bulk-insert throughput by about 60 % in bench/bench_ingestion.py. Uniqueness (the
idempotency of ingestion) is the separate ``UNIQUE`` constraint, which stays. No-op elsewhere.
"""
from django.db import migrations


def _like_index(schema_editor) -> str:
    """The name Django gave it (the same function that named it in 0001)."""
    return schema_editor._create_index_name("analysis_event", ["event_id"], suffix="_like")


def drop_like_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    name = schema_editor.quote_name(_like_index(schema_editor))
    schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def restore_like_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    name = schema_editor.quote_name(_like_index(schema_editor))
    schema_editor.execute(
        f'CREATE INDEX IF NOT EXISTS {name} ON "analysis_event" ("event_id" varchar_pattern_ops)'
    )


class Migration(migrations.Migration):

    dependencies = [
        ("analysis", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(drop_like_index, restore_like_index, elidable=False),
    ]
