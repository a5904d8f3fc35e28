from django.db import migrations


class Migration(migrations.Migration):
    """Once filled the rollups; 0017 does it now, after adding the columns the rebuild also fills (an install that
    ran this one already gets them refilled there)."""

    dependencies = [
        ("llm", "0013_usage_error_message"),
    ]

    operations = []
