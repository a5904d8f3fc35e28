from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "common"
    verbose_name = "Common"

    def ready(self) -> None:
        from common import (
            audit_signals,
            checks,  # noqa: F401  (registers the system checks)
            db_connections,
        )

        db_connections.install()
        audit_signals.connect()
