from django.apps import AppConfig


class CalendarsConfig(AppConfig):
    name = "calendars"
    verbose_name = "Google Calendar"

    def ready(self) -> None:
        from calendars import checks  # noqa: F401  (registers the system checks)
        from calendars.nl import webhook_calendar_event
        from llm.apis.webhook import register_type_handler

        register_type_handler("calendar_event", webhook_calendar_event)
