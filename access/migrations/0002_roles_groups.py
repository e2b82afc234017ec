"""Create the three role groups. Their permissions are (re)applied after every migrate by
``access.roles.sync_on_migrate``, once every app's permissions exist."""
from django.db import migrations


def create_roles(apps, schema_editor):
    from access.roles import sync_roles

    sync_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [
        ("access", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
