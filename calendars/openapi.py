"""OpenAPI pieces of the calendar API: what each error status means there, examples, and the event as the API
returns it."""

from rest_framework import serializers

from common import openapi
from common.openapi import error_example

# What each error status means on the calendar endpoints (the body is the shared error model).
ERROR_MEANINGS = {
    400: "Invalid input (`invalid_request`) or rejected by Google (`calendar_invalid_request`).",
    403: "The token lacks the `calendar` scope, or Google refused (`calendar_forbidden`).",
    404: "No such event or calendar (`calendar_not_found`).",
    409: "Connect or reconnect first (`calendar_not_connected`, `calendar_reconnect_required`, with "
    "`details.authorization_url`), a Google conflict, or a reused Idempotency-Key.",
    429: "Google's rate limit, after bounded retries (`calendar_rate_limited`), or this token's calendar throttle "
    "(`rate_limited`, API_THROTTLE_RATE_CALENDAR); both with `Retry-After`.",
    502: "Google failed or could not be reached (`calendar_upstream_error`).",
    503: "Google Calendar is not configured (`calendar_not_configured`; `details.missing` names the settings).",
}


def error_responses(*statuses: int) -> dict:
    return openapi.error_responses(*statuses, meanings=ERROR_MEANINGS)


API_ERRORS = (400, 403, 409, 429, 502, 503)


NOT_CONFIGURED = error_example(
    "Not configured",
    503,
    "calendar_not_configured",
    "Google Calendar is not configured on this server. Set GOOGLE_CLIENT_SECRETS_FILE or GOOGLE_CLIENT_ID + "
    "GOOGLE_CLIENT_SECRET; GOOGLE_TOKEN_ENCRYPTION_KEYS. See docs/google-calendar.md.",
    {"missing": ["GOOGLE_CLIENT_SECRETS_FILE or GOOGLE_CLIENT_ID + GOOGLE_CLIENT_SECRET"]},
)
RECONNECT = error_example(
    "Reconnect required",
    409,
    "calendar_reconnect_required",
    "Google no longer accepts the stored authorization. Reconnect: open `details.authorization_url`.",
    {"authorization_url": "https://accounts.google.com/o/oauth2/auth?response_type=code&client_id=…&state=…"},
)
RATE_LIMITED = error_example(
    "Rate limited (Retry-After header set)",
    429,
    "calendar_rate_limited",
    "Google Calendar's rate limit was reached; retry after the time in `Retry-After`.",
    {"google_status": 403, "google_reason": "rateLimitExceeded", "google_message": "Rate Limit Exceeded"},
)
UPSTREAM = error_example("Google failed", 502, "calendar_upstream_error", "Google Calendar answered 503.")
INVALID = error_example(
    "Invalid event",
    400,
    "invalid_request",
    "Invalid `end`: The end must be after the start.",
    {"end": ["The end must be after the start."], "timezone": ["'Mars/Base' is not an IANA timezone name."]},
)
NOT_FOUND = error_example("No such event", 404, "calendar_not_found", "Google Calendar: Not Found.")
COMMON_ERRORS = [NOT_CONFIGURED, RECONNECT, RATE_LIMITED, UPSTREAM]

EVENT_EXAMPLE = {
    "id": "j1ua5bkhr3ptv0c9dbe9m0ng6ocmhfeh8n0ke3gu4ctj4on1hqvg",
    "status": "confirmed",
    "summary": "Team lunch",
    "description": "",
    "location": "Canteen",
    "all_day": False,
    "start": "2025-04-01T13:00:00+02:00",
    "end": "2025-04-01T14:00:00+02:00",
    "timezone": "Europe/Berlin",
    "attendees": ["team@example.com"],
    "recurrence": [],
    "recurring_event_id": "",
    "html_link": "https://www.google.com/calendar/event?eid=…",
    "created": "2025-03-27T09:12:03.000Z",
    "updated": "2025-03-27T09:12:03.000Z",
}


class CalendarEventSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    summary = serializers.CharField()
    description = serializers.CharField()
    location = serializers.CharField()
    all_day = serializers.BooleanField()
    start = serializers.CharField(help_text="RFC 3339 date-time with offset, or a date for all-day events.")
    end = serializers.CharField(help_text="Exclusive: for all-day events the day after the last day.")
    timezone = serializers.CharField()
    attendees = serializers.ListField(child=serializers.EmailField())
    recurrence = serializers.ListField(child=serializers.CharField())
    recurring_event_id = serializers.CharField()
    html_link = serializers.CharField()
    created = serializers.CharField()
    updated = serializers.CharField()
