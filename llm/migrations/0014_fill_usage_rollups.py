from django.db import migrations


def fill(apps, schema_editor):
    """The rollups of the records written before they existed, computed as `manage.py rebuild_usage_rollups` does."""
    from llm.rollups import rollups_rebuild

    rollups_rebuild(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("llm", "0013_usage_error_message"),
    ]

    operations = [
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
