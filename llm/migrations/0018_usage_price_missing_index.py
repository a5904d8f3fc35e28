"""A partial index of the usage records with tokens but no cost (the admin counts them in any filtered set).

On PostgreSQL it is built CONCURRENTLY, so the gateway keeps writing usage records while it builds: on a table of
millions of rows that takes a while (one pass over the table; about half a minute at 10M rows on a small machine).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL, a plain CREATE INDEX elsewhere (SQLite)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("llm", "0017_usage_daily_cost_counts"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="usagerecord",
            index=models.Index(
                condition=models.Q(
                    ("cost_usd__isnull", True),
                    models.Q(("input_tokens__gt", 0), ("output_tokens__gt", 0), _connector="OR"),
                ),
                fields=["created_at"],
                name="usage_price_missing",
            ),
        ),
    ]
