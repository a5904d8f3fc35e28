"""The events API (/api/v1/calendar/events): the bodies sent to Google, validation, idempotent create, and the
mapping of each Google error. google-api-python-client runs unmodified against tests/fake_google.py."""

import json
import re

import pytest
from rest_framework.test import APIClient

from calendars.models import GoogleCredential

pytest_plugins = ["tests.fake_google"]
pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/calendar/events"
LUNCH = {
    "summary": "Team lunch",
    "start": "2025-04-01T13:00",
    "end": "2025-04-01T14:00",
    "timezone": "Europe/Berlin",
    "attendees": ["team@example.com"],
}


def _sent(fake, method: str = "POST") -> list[str]:
    return [path for m, path in fake.requests if m == method and "/calendar/v3/" in path]


def _create(client, body=None, **headers):
    return client.post(EVENTS, body or LUNCH, format="json", **headers)


# --- Create -------------------------------------------------------------------------------------------------


def test_create_timed_event_sends_the_offset_of_that_day(connected, fake_google, auth_client):
    response = _create(auth_client)
    assert response.status_code == 201, response.content
    event = response.json()
    assert event["summary"] == "Team lunch" and event["attendees"] == ["team@example.com"]
    assert event["start"] == "2025-04-01T13:00:00+02:00" and event["timezone"] == "Europe/Berlin"
    stored = fake_google.events()[event["id"]]
    assert stored["start"] == {"dateTime": "2025-04-01T13:00:00+02:00", "timeZone": "Europe/Berlin"}
    assert stored["end"] == {"dateTime": "2025-04-01T14:00:00+02:00", "timeZone": "Europe/Berlin"}
    assert stored["attendees"] == [{"email": "team@example.com", "responseStatus": "needsAction"}]
    assert _sent(fake_google) == ["/calendar/v3/calendars/primary/events?sendUpdates=none&alt=json"]


def test_create_in_winter_uses_the_winter_offset_and_the_users_timezone(connected, fake_google, auth_client, user):
    user.preferences.timezone = "America/New_York"
    user.preferences.save()
    body = {"summary": "Standup", "start": "2025-01-15T09:30", "end": "2025-01-15T09:45"}
    event = _create(auth_client, body).json()
    assert event["start"] == "2025-01-15T09:30:00-05:00" and event["timezone"] == "America/New_York"


def test_create_with_an_explicit_offset_keeps_the_instant(connected, auth_client):
    body = {**LUNCH, "start": "2025-04-01T11:00:00Z", "end": "2025-04-01T12:00:00+00:00"}
    event = _create(auth_client, body).json()
    assert event["start"] == "2025-04-01T11:00:00+00:00" and event["timezone"] == "Europe/Berlin"


def test_create_all_day_event_uses_dates_with_an_exclusive_end(connected, fake_google, auth_client):
    body = {"summary": "Offsite", "start": "2025-04-01", "end": "2025-04-03", "all_day": True}
    event = _create(auth_client, body).json()
    assert event["all_day"] is True and (event["start"], event["end"]) == ("2025-04-01", "2025-04-03")
    stored = fake_google.events()[event["id"]]
    assert stored["start"] == {"date": "2025-04-01"} and stored["end"] == {"date": "2025-04-03"}


def test_create_weekly_recurring_event(connected, fake_google, auth_client):
    rule = "RRULE:FREQ=WEEKLY;BYDAY=TU;UNTIL=20250630T215959Z"
    body = {**LUNCH, "recurrence": [rule, "EXDATE;TZID=Europe/Berlin:20250415T130000"]}
    event = _create(auth_client, body).json()
    assert fake_google.events()[event["id"]]["recurrence"] == body["recurrence"]
    assert event["recurrence"] == body["recurrence"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"end": "2025-04-01T12:00"}, "end", "The end must be after the start."),
        ({"end": "2025-04-01T13:00"}, "end", "The end must be after the start."),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "'Mars/Olympus_Mons' is not an IANA timezone name"),
        ({"attendees": ["team@example.com", "not-an-email"]}, "attendees.1", "Enter a valid email address."),
        ({"recurrence": ["RRULE:FREQ=WEEKLYY"]}, "recurrence", "invalid 'FREQ': WEEKLYY"),
        ({"recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=XX"]}, "recurrence", "invalid 'BYDAY': XX"),
        ({"recurrence": ["FREQ=WEEKLY"]}, "recurrence", "each line starts with RRULE:"),
        ({"recurrence": ["RRULE:FREQ=DAILY;COUNT=3;UNTIL=20250630T000000Z"]}, "recurrence", "COUNT and UNTIL"),
        ({"summary": "x" * 501}, "summary", "Ensure this field has no more than 500 characters."),
        ({"summary": "   "}, "summary", "This field may not be blank."),
        ({"start": "2025-04-01", "end": "2025-04-01", "all_day": True}, "end", "all-day ends are exclusive"),
        ({"start": "2025-04-01T10:00", "end": "2025-04-02", "all_day": True}, "start", "Use a date like"),
        ({"start": "2025-04-01", "end": "2025-04-02"}, "start", "Use a date-time like"),
        ({"start": "tomorrow"}, "start", "Use a date-time like"),
        # 02:30 on the last Sunday of March does not exist in Berlin: the clocks jump from 02:00 to 03:00.
        ({"start": "2025-03-30T02:30", "end": "2025-03-30T04:00"}, "start", "does not exist in Europe/Berlin"),
    ],
    ids=[
        "end-before-start",
        "zero-length",
        "bad-timezone",
        "bad-attendee",
        "bad-freq",
        "bad-byday",
        "not-an-rrule-line",
        "count-and-until",
        "summary-too-long",
        "summary-blank",
        "all-day-empty",
        "all-day-with-time",
        "timed-with-date",
        "unparseable",
        "dst-gap",
    ],
)
def test_create_validation(connected, fake_google, auth_client, change, field, message):
    response = _create(auth_client, {**LUNCH, **change})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert any(message in text for text in error["details"][field]), error["details"]
    assert _sent(fake_google) == []  # nothing reached Google


def test_ambiguous_autumn_time_takes_the_first_occurrence(connected, auth_client):
    # 02:30 on 2025-10-26 happens twice in Berlin (+02:00, then +01:00): the first one is used.
    event = _create(auth_client, {**LUNCH, "start": "2025-10-26T02:30", "end": "2025-10-26T03:30"}).json()
    assert event["start"] == "2025-10-26T02:30:00+02:00"


# --- Idempotent create --------------------------------------------------------------------------------------


def test_idempotency_key_makes_retries_safe(connected, fake_google, auth_client):
    first = _create(auth_client, HTTP_IDEMPOTENCY_KEY="order-4711")
    assert first.status_code == 201 and first["Idempotent-Replayed"] == "false"
    event_id = first.json()["id"]
    assert re.fullmatch(r"[0-9a-v]{52}", event_id)  # base32hex, as Google requires for client ids

    retry = _create(auth_client, HTTP_IDEMPOTENCY_KEY="order-4711")
    assert retry.status_code == 200 and retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert len(fake_google.live_events()) == 1
    # The retry really asked Google to insert the same id, and Google's 409 meant "already there".
    assert len(_sent(fake_google, "POST")) == 2 and fake_google.count("GET", f"/events/{event_id}") == 1

    other = _create(auth_client, {**LUNCH, "summary": "Other"}, HTTP_IDEMPOTENCY_KEY="order-4712")
    assert other.status_code == 201 and other.json()["id"] != event_id
    assert len(fake_google.live_events()) == 2


def test_idempotency_key_reused_for_another_event_is_refused(connected, fake_google, auth_client):
    assert _create(auth_client, HTTP_IDEMPOTENCY_KEY="k-1").status_code == 201
    response = _create(auth_client, {**LUNCH, "summary": "Something else"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert [e["summary"] for e in fake_google.live_events()] == ["Team lunch"]


def test_idempotency_keys_are_per_user(connected, fake_google, auth_client, make_token):
    from calendars import mapping

    ids = {mapping.idempotent_event_id(user_id=uid, calendar_id="primary", key="same") for uid in (1, 2)}
    assert len(ids) == 2
    assert mapping.idempotent_event_id(user_id=1, calendar_id="primary", key="same") == mapping.idempotent_event_id(
        user_id=1, calendar_id="primary", key="same"
    )


def test_bad_idempotency_key_is_refused(connected, auth_client):
    response = _create(auth_client, HTTP_IDEMPOTENCY_KEY="with space")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], list(error["details"])) == ("invalid_idempotency_key", ["Idempotency-Key"])


# --- List, get, patch, delete -------------------------------------------------------------------------------


def test_list_filters_by_time_and_text_and_pages(connected, fake_google, auth_client):
    for day in ("01", "02", "03"):
        body = {**LUNCH, "summary": f"Lunch {day}", "start": f"2025-04-{day}T13:00", "end": f"2025-04-{day}T14:00"}
        assert _create(auth_client, body).status_code == 201
    _create(auth_client, {**LUNCH, "summary": "Dentist", "start": "2025-04-02T08:00", "end": "2025-04-02T09:00"})

    page = auth_client.get(EVENTS, {"time_min": "2025-04-02", "time_max": "2025-04-04", "timezone": "Europe/Berlin"})
    assert page.status_code == 200
    assert [e["summary"] for e in page.json()["events"]] == ["Dentist", "Lunch 02", "Lunch 03"]
    listed = [p for m, p in fake_google.requests if m == "GET" and "/events?" in p][-1]
    assert "timeMin=2025-04-02T00%3A00%3A00%2B02%3A00" in listed and "singleEvents=true" in listed

    found = auth_client.get(EVENTS, {"q": "lunch", "max_results": 2}).json()
    assert [e["summary"] for e in found["events"]] == ["Lunch 01", "Lunch 02"] and found["next_page_token"]
    rest = auth_client.get(EVENTS, {"q": "lunch", "max_results": 2, "page_token": found["next_page_token"]}).json()
    assert [e["summary"] for e in rest["events"]] == ["Lunch 03"] and rest["next_page_token"] is None


def test_list_other_calendar_and_bad_ranges(connected, fake_google, auth_client):
    assert auth_client.get(EVENTS, {"calendar_id": "team@group.calendar.google.com"}).json()["events"] == []
    assert any("/calendars/team%40group.calendar.google.com/events" in p for _, p in fake_google.requests)
    bad = auth_client.get(EVENTS, {"time_min": "2025-04-02", "time_max": "2025-04-01"})
    assert bad.status_code == 400 and "time_max" in bad.json()["error"]["details"]
    assert auth_client.get(EVENTS, {"time_min": "soon"}).status_code == 400
    assert auth_client.get(EVENTS, {"max_results": 0}).status_code == 400


def test_get_patch_delete(connected, fake_google, auth_client):
    event_id = _create(auth_client).json()["id"]
    url = f"{EVENTS}/{event_id}"
    assert auth_client.get(url).json()["summary"] == "Team lunch"

    moved = auth_client.patch(url, {"start": "2025-04-01T14:00", "end": "2025-04-01T15:30"}, format="json")
    assert moved.status_code == 200, moved.content
    assert moved.json()["start"] == "2025-04-01T14:00:00+02:00" and moved.json()["summary"] == "Team lunch"
    renamed = auth_client.patch(url, {"summary": "Long lunch", "location": "Canteen"}, format="json").json()
    assert (renamed["summary"], renamed["location"]) == ("Long lunch", "Canteen")
    all_day = auth_client.patch(url, {"start": "2025-04-01", "end": "2025-04-02", "all_day": True}, format="json")
    assert fake_google.events()[event_id]["start"] == {"date": "2025-04-01"}  # no dateTime left behind
    assert all_day.json()["all_day"] is True

    half = auth_client.patch(url, {"start": "2025-04-01T14:00"}, format="json")
    assert half.status_code == 400 and "send both start and end" in half.json()["error"]["details"]["start"][0]
    assert auth_client.patch(url, {}, format="json").status_code == 400
    assert auth_client.patch(url, {"attendees": ["nope"]}, format="json").status_code == 400

    assert auth_client.delete(url).status_code == 204
    assert fake_google.events()[event_id]["status"] == "cancelled"
    again = auth_client.delete(url)  # Google: 410 Gone
    assert again.status_code == 404 and again.json()["error"]["code"] == "calendar_not_found"
    assert auth_client.get(f"{EVENTS}/doesnotexist1").status_code == 404
    assert auth_client.get(f"{EVENTS}/bad%20id").status_code == 400


def test_not_connected_answers_409_with_an_authorization_url(google_settings, fake_google, auth_client):
    response = auth_client.get(EVENTS)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "calendar_not_connected"
    assert error["details"]["authorization_url"].startswith(fake_google.auth_uri)


def test_events_need_the_calendar_scope(connected, make_token, user):
    _, llm_only = make_token(user=user, scopes=["llm"])
    response = APIClient().get(EVENTS, HTTP_AUTHORIZATION=f"Bearer {llm_only}")
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"


# --- Google's errors ----------------------------------------------------------------------------------------


def google_error(status: int, reason: str, message: str = "error") -> dict:
    return {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}


@pytest.mark.parametrize(
    ("status", "body", "times", "expected_status", "expected_code"),
    [
        (403, google_error(403, "forbidden", "Forbidden"), 1, 403, "calendar_forbidden"),
        (403, google_error(403, "insufficientPermissions", "Insufficient Permission"), 1, 403, "calendar_forbidden"),
        (404, google_error(404, "notFound", "Not Found"), 1, 404, "calendar_not_found"),
        (409, google_error(409, "conflict", "Conflict"), 1, 409, "calendar_conflict"),
        (400, google_error(400, "invalid", "Invalid attendee"), 1, 400, "calendar_invalid_request"),
        (500, google_error(500, "backendError", "Backend Error"), 1, 502, "calendar_upstream_error"),
        (503, "<html>Service Unavailable</html>", 1, 502, "calendar_upstream_error"),
        (429, google_error(429, "rateLimitExceeded", "Rate Limit Exceeded"), 3, 429, "calendar_rate_limited"),
        (403, google_error(403, "rateLimitExceeded", "Rate Limit Exceeded"), 3, 429, "calendar_rate_limited"),
        (403, google_error(403, "userRateLimitExceeded", "User Rate Limit"), 3, 429, "calendar_rate_limited"),
    ],
    ids=[
        "403-forbidden",
        "403-scope",
        "404",
        "409",
        "400",
        "500",
        "503-html",
        "429",
        "403-rateLimitExceeded",
        "403-userRateLimitExceeded",
    ],
)
def test_google_error_mapping(connected, fake_google, auth_client, status, body, times, expected_status, expected_code):
    fake_google.fail(status, body, path_contains="/calendar/v3/", times=times)
    response = auth_client.get(EVENTS)
    assert response.status_code == expected_status, response.content
    assert response.json()["error"]["code"] == expected_code
    assert GoogleCredential.objects.get().status == "connected"  # none of these is an auth failure
    if expected_status == 429:
        assert response["Retry-After"] == "1"
        assert fake_google.count("GET", "/calendar/v3/") == 3  # 1 + GOOGLE_API_MAX_RETRIES, then it gives up
    else:
        assert fake_google.count("GET", "/calendar/v3/") == 1  # no retry
    if status == 403 and expected_status == 403 and "insufficient" in json.dumps(body):
        assert "reconnect" in response.json()["error"]["message"]


def test_rate_limit_retries_then_succeeds(connected, fake_google, auth_client):
    fake_google.fail(429, google_error(429, "rateLimitExceeded"), path_contains="/calendar/v3/", times=2)
    response = auth_client.get(EVENTS)
    assert response.status_code == 200
    assert fake_google.count("GET", "/calendar/v3/") == 3


def test_rate_limit_passes_googles_retry_after_on(connected, fake_google, auth_client, google_settings):
    google_settings.GOOGLE_API_MAX_RETRIES = 0
    fake_google.fail(
        429, google_error(429, "rateLimitExceeded"), path_contains="/calendar/v3/", headers={"Retry-After": "17"}
    )
    response = auth_client.get(EVENTS)
    assert response.status_code == 429 and response["Retry-After"] == "17"


def test_401_from_the_api_twice_means_reconnect(connected, fake_google, auth_client):
    # 401, then the client refreshes (Google accepts) and retries, and Google says 401 again: reconnect.
    fake_google.fail(401, google_error(401, "authError", "Invalid Credentials"), path_contains="/calendar/v3/", times=2)
    response = auth_client.get(EVENTS)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "calendar_reconnect_required"
    assert "authorization_url" in response.json()["error"]["details"]
    assert GoogleCredential.objects.get().status == "needs_reconnect"


def test_google_unreachable_is_502(connected, google_settings, auth_client):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    google_settings.GOOGLE_CALENDAR_API_ENDPOINT = f"http://127.0.0.1:{closed_port}/calendar/v3/"
    response = auth_client.get(EVENTS)
    assert response.status_code == 502 and response.json()["error"]["code"] == "calendar_upstream_error"


def test_the_client_is_built_from_the_bundled_discovery_document(connected, fake_google, google_settings):
    # The fixtures fail any non-loopback connection, and the fake logs every request: building the client
    # fetches nothing (static discovery), and the first request goes straight to the events endpoint.
    from calendars import google_client
    from calendars.config import google_config_get

    before = list(fake_google.requests)
    google_settings.GOOGLE_CALENDAR_API_ENDPOINT = ""  # even the real endpoint: building must not connect
    service = google_client.service_build(google_config_get(), credentials=None)
    assert fake_google.requests == before
    assert service.events().list(calendarId="primary").uri.startswith("https://www.googleapis.com/calendar/v3/")
