from django.apps import AppConfig


class CalendarsConfig(AppConfig):
    name = "calendars"
    verbose_name = "Google Calendar"

    def ready(self) -> None:
        from calendars import checks  # noqa: F401  (registers the system checks)
