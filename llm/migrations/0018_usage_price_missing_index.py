"""Empty on purpose. It first added a partial index of the usage records with tokens but no cost, for the admin's
totals; `UsageDaily.price_missing` (0017) counts those now, so no index over the usage table is needed and none is
built on upgrade. Kept so that later migrations can depend on it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("llm", "0017_usage_daily_cost_counts"),
    ]

    operations = []
