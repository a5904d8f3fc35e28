from django.urls import path

from calendars import apis, event_apis, nl_apis

app_name = "calendar"

urlpatterns = [
    path("auth", apis.CalendarAuthApi.as_view(), name="auth"),
    path("oauth2callback", apis.CalendarOAuthCallbackApi.as_view(), name="oauth2callback"),
    path("status", apis.CalendarStatusApi.as_view(), name="status"),
    path("revoke", apis.CalendarRevokeApi.as_view(), name="revoke"),
    path("process-text", nl_apis.CalendarProcessTextApi.as_view(), name="process-text"),
    path("events", event_apis.CalendarEventsApi.as_view(), name="events"),
    path("events/<str:event_id>", event_apis.CalendarEventDetailApi.as_view(), name="event-detail"),
]
