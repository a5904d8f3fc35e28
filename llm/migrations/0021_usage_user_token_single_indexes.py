import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# The single-column indexes of usage records' user and token: every lookup by either (and the SET NULL of a deleted
# user or token) is served by the composite indexes that lead with them (usage_user_time, usage_user_id,
# usage_token_time), and each index more is one more B-tree every record insert updates. Dropped by name (Django's
# names, the same on both backends), not by AlterField, which on SQLite would copy the whole table to drop them.
INDEXES = {"user_id": "llm_usagerecord_user_id_127a6372", "token_id": "llm_usagerecord_token_id_57e6c359"}


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_metrics_scope"),
        ("llm", "0020_usage_unrouted_model_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="usagerecord",
                    name="token",
                    field=models.ForeignKey(
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="accounts.apitoken",
                    ),
                ),
                migrations.AlterField(
                    model_name="usagerecord",
                    name="user",
                    field=models.ForeignKey(
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" ON "llm_usagerecord" ("{column}")',
                )
                for column, name in INDEXES.items()
            ],
        ),
    ]
