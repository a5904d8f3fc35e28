from django.apps import AppConfig


class CalendarsConfig(AppConfig):
    name = "calendars"
    verbose_name = "Google Calendar"

    def ready(self) -> None:
        from calendars import checks, connections  # noqa: F401  (checks: registers the system checks)
        from common import key_rotation

        key_rotation.register(
            key_rotation.Rotator(
                name="GOOGLE_TOKEN_ENCRYPTION_KEYS",
                count=connections.encryption_rows_count,
                rotate=connections.encryption_keys_rotation,
            )
        )
        from calendars.nl import webhook_calendar_event
        from llm.webhook_calls import register_type_handler

        register_type_handler("calendar_event", webhook_calendar_event)
