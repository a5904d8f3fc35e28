"""Job rows keep their own template variables."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0002_file_source_kind'),
    ]

    operations = [
        migrations.AddField(
            model_name='jobitem',
            name='variables',
            field=models.JSONField(blank=True, default=dict, help_text='Per-item template variables.'),
        ),
    ]
