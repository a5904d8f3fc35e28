"""A small partial index of the usage records that never reached a model (no upstream model), covering what the
admin's usage totals sum (llm/usage_totals.py).

On PostgreSQL it is built CONCURRENTLY, so the gateway keeps writing usage records meanwhile; the build still reads
the whole table once (about half a minute at 10M rows on a small, busy machine). An interrupted build leaves an
INVALID index `usage_unrouted_model`: drop it, then migrate again.
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
        ("llm", "0019_conversation_summary"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="usagerecord",
            index=models.Index(
                condition=models.Q(("upstream_model", "")),
                fields=["requested_model", "created_at"],
                include=(
                    "id",
                    "user_id",
                    "token_id",
                    "provider",
                    "status",
                    "priced",
                    "cost_usd",
                    "saved_usd",
                    "input_tokens",
                    "output_tokens",
                    "cached_input_tokens",
                    "cache_write_tokens",
                    "reasoning_tokens",
                ),
                name="usage_unrouted_model",
            ),
        ),
    ]
