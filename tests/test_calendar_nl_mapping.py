"""The natural-language seam: the LLM's structured output (EVENT_EXTRACTION_SCHEMA) -> Google events.

The LLM resolves relative dates; these tests hand `calendar_events_from_extraction` what an LLM would answer for
each phrase (given `extraction_instructions(now=..., ...)`) and check the events that reach the fake Google:
DST-correct offsets, all-day with an exclusive end, weekly RRULE, attendees, clarification, dry run, and an
idempotent retry."""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import jsonschema
import pytest

from calendars.errors import CalendarExtractionInvalid, CalendarNotConnected
from calendars.schemas import EVENT_EXTRACTION_SCHEMA, EVENT_EXTRACTION_SCHEMA_NAME, extraction_instructions
from calendars.services import calendar_events_from_extraction

pytest_plugins = ["tests.fake_google"]
pytestmark = pytest.mark.django_db


def event(summary="Team lunch", start="2025-04-01T13:00:00", **fields) -> dict:
    base = {
        "summary": summary,
        "description": None,
        "location": None,
        "all_day": False,
        "start": start,
        "end": None,
        "timezone": None,
        "attendees": [],
        "recurrence": None,
    }
    return {**base, **fields}


def extraction(*events) -> dict:
    return {"status": "events", "question": None, "events": list(events)}


def weekly(**fields) -> dict:
    return {"frequency": "WEEKLY", "interval": None, "by_weekday": [], "count": None, "until": None, **fields}


@pytest.fixture
def berlin(user):
    user.preferences.timezone = "Europe/Berlin"
    user.preferences.save()
    return user


def run(user, data, **kwargs):
    return calendar_events_from_extraction(user=user, extraction=data, **kwargs)


# --- The schema the gateway passes as structured output ------------------------------------------------------


def _walk(schema):
    yield schema
    for child in (schema.get("properties") or {}).values():
        yield from _walk(child)
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"])


def test_schema_is_strict_mode_friendly():
    assert EVENT_EXTRACTION_SCHEMA_NAME == "calendar_events"
    jsonschema.Draft202012Validator.check_schema(EVENT_EXTRACTION_SCHEMA)
    objects = [s for s in _walk(EVENT_EXTRACTION_SCHEMA) if "properties" in s]
    assert len(objects) == 3  # the answer, an event, a recurrence
    for schema in objects:
        assert schema["additionalProperties"] is False
        assert sorted(schema["required"]) == sorted(schema["properties"])  # strict mode: everything required
    json.dumps(EVENT_EXTRACTION_SCHEMA)  # plain JSON


def test_examples_match_the_schema():
    validator = jsonschema.Draft202012Validator(EVENT_EXTRACTION_SCHEMA)
    samples = [
        extraction(event(attendees=["team@example.com"], recurrence=weekly(by_weekday=["TU"], count=4))),
        {"status": "needs_clarification", "question": "Which day next week?", "events": []},
    ]
    for sample in samples:
        validator.validate(sample)
    assert list(validator.iter_errors({"status": "events", "question": None, "events": [{"summary": "x"}]}))


def test_instructions_give_the_current_time_with_offset_weekday_and_timezone():
    now = datetime(2025, 3, 27, 9, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    text = extraction_instructions(now=now, timezone_name="Europe/Berlin")
    assert "2025-03-27T09:30:00+01:00 (Thursday)" in text and "Europe/Berlin" in text
    assert "needs_clarification" in text


# --- Mapping and creating ---------------------------------------------------------------------------------------


def test_next_tuesday_3pm_across_the_dst_change(connected, berlin, fake_google):
    # "Thursday 27 March 2025 (+01:00): next Tuesday at 3pm" -> the LLM answers 2025-04-01T15:00, which falls
    # after the clocks went forward on 30 March: the event must carry +02:00 (13:00 UTC), not today's +01:00.
    result = run(berlin, extraction(event("Call", start="2025-04-01T15:00:00")))
    assert result.status == "created" and result.timezone == "Europe/Berlin"
    (created,) = result.events
    assert created["created"] is True
    stored = fake_google.events()[created["id"]]
    assert stored["start"] == {"dateTime": "2025-04-01T15:00:00+02:00", "timeZone": "Europe/Berlin"}
    assert stored["end"] == {"dateTime": "2025-04-01T16:00:00+02:00", "timeZone": "Europe/Berlin"}  # 1 h default
    start = datetime.fromisoformat(stored["start"]["dateTime"])
    assert start.astimezone(ZoneInfo("UTC")).hour == 13


def test_us_dst_change_and_a_timezone_named_in_the_text(connected, berlin, fake_google):
    # "next Tuesday 3pm New York time", said on Thursday 6 March 2025: the US switched on 9 March (-05:00 -> -04:00).
    result = run(berlin, extraction(event("Sync", start="2025-03-11T15:00:00", timezone="America/New_York")))
    stored = fake_google.events()[result.events[0]["id"]]
    assert stored["start"] == {"dateTime": "2025-03-11T15:00:00-04:00", "timeZone": "America/New_York"}


def test_request_timezone_beats_the_preference(connected, berlin, fake_google):
    result = run(berlin, extraction(event(start="2025-01-07T09:00:00")), timezone_name="Asia/Tokyo")
    assert result.timezone == "Asia/Tokyo"
    assert fake_google.events()[result.events[0]["id"]]["start"]["dateTime"] == "2025-01-07T09:00:00+09:00"


def test_all_day_events_get_an_exclusive_end(connected, berlin, fake_google):
    data = extraction(
        event("Conference", start="2025-04-07", end="2025-04-09", all_day=True),  # Monday to Wednesday
        event("Holiday", start="2025-04-18", all_day=True),  # one day
    )
    conference, holiday = run(berlin, data).events
    assert fake_google.events()[conference["id"]]["start"] == {"date": "2025-04-07"}
    assert fake_google.events()[conference["id"]]["end"] == {"date": "2025-04-10"}
    assert (holiday["start"], holiday["end"], holiday["all_day"]) == ("2025-04-18", "2025-04-19", True)


def test_weekly_recurrence(connected, berlin, fake_google):
    data = extraction(
        event("Yoga", start="2025-04-01T18:00:00", end="2025-04-01T19:00:00", recurrence=weekly(by_weekday=["TU"])),
        event("1:1", start="2025-04-03T10:00:00", recurrence=weekly(interval=2, by_weekday=["TH"], count=6)),
        # "every Tuesday until the end of June": UNTIL is 30 June 23:59:59 in Berlin (+02:00), in UTC.
        event("Stand-up", start="2025-04-01T09:00:00", recurrence=weekly(until="2025-06-30")),
        event("Cleanup", start="2025-04-05", all_day=True, recurrence=weekly(until="2025-06-28")),
    )
    yoga, one_on_one, standup, cleanup = run(berlin, data).events
    assert yoga["recurrence"] == ["RRULE:FREQ=WEEKLY;BYDAY=TU"]
    assert one_on_one["recurrence"] == ["RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TH;COUNT=6"]
    assert standup["recurrence"] == ["RRULE:FREQ=WEEKLY;UNTIL=20250630T215959Z"]
    assert cleanup["recurrence"] == ["RRULE:FREQ=WEEKLY;UNTIL=20250628"]
    # Recurring timed events carry their zone, so Google keeps 18:00 local across DST changes.
    assert fake_google.events()[yoga["id"]]["start"]["timeZone"] == "Europe/Berlin"


def test_attendees(connected, berlin, fake_google):
    data = extraction(event(attendees=["team@example.com", "Bob@Example.com", "team@example.com"]))
    (created,) = run(berlin, data).events
    assert created["attendees"] == ["team@example.com", "Bob@Example.com"]  # duplicates dropped
    assert fake_google.events()[created["id"]]["attendees"] == [
        {"email": "team@example.com", "responseStatus": "needsAction"},
        {"email": "Bob@Example.com", "responseStatus": "needsAction"},
    ]


def test_clarification_creates_nothing(connected, berlin, fake_google):
    before = list(fake_google.requests)
    result = run(berlin, {"status": "needs_clarification", "question": "Which day next week?", "events": []})
    assert result.to_dict() == {
        "status": "needs_clarification",
        "question": "Which day next week?",
        "events": [],
        "timezone": "Europe/Berlin",
    }
    assert fake_google.requests == before


def test_dry_run_previews_without_google_or_a_connection(google_settings, berlin, fake_google):
    data = extraction(event("Team lunch", start="2025-04-01T13:00:00", attendees=["team@example.com"]))
    result = run(berlin, data, dry_run=True)
    assert result.status == "preview" and fake_google.requests == []  # not even connected: nothing was needed
    (preview,) = result.events
    assert preview["created"] is False and preview["status"] == "preview"
    assert preview["start"] == "2025-04-01T13:00:00+02:00" and preview["attendees"] == ["team@example.com"]
    assert preview["google_event"]["start"] == {"dateTime": "2025-04-01T13:00:00+02:00", "timeZone": "Europe/Berlin"}
    with pytest.raises(CalendarNotConnected):
        run(berlin, data)  # for real it needs the connection
    # The preview's id is the one a real run with the same input will use.
    assert run(berlin, data, dry_run=True).events[0]["id"] == preview["id"]


def test_idempotent_retry(connected, berlin, fake_google):
    data = extraction(event("Lunch", start="2025-04-01T13:00:00"), event("Dinner", start="2025-04-01T19:00:00"))
    first = run(berlin, data, idempotency_key="req-1")
    assert [e["created"] for e in first.events] == [True, True]
    retry = run(berlin, data, idempotency_key="req-1")
    assert [e["created"] for e in retry.events] == [False, False]
    assert [e["id"] for e in retry.events] == [e["id"] for e in first.events]
    assert sorted(e["summary"] for e in fake_google.live_events()) == ["Dinner", "Lunch"]
    # Without a key the id comes from the event itself: the same extraction again is still no duplicate.
    again = run(berlin, extraction(event("Breakfast", start="2025-04-02T08:00:00")))
    assert (
        run(berlin, extraction(event("Breakfast", start="2025-04-02T08:00:00"))).events[0]["id"]
        == again.events[0]["id"]
    )
    assert len(fake_google.live_events()) == 3


def test_a_partial_failure_is_resumed_by_the_retry(connected, berlin, fake_google):
    from calendars.errors import CalendarUpstreamError

    one, two = event("One", start="2025-04-01T10:00:00"), event("Two", start="2025-04-01T11:00:00")
    # The first try got "One" into Google, then Google failed on "Two": the caller saw a 502.
    fake_google.fail(
        503, {"error": {"code": 503, "message": "Backend Error"}}, method="POST", path_contains="/events", after=1
    )
    with pytest.raises(CalendarUpstreamError):
        run(berlin, extraction(one, two), idempotency_key="k")
    assert [e["summary"] for e in fake_google.live_events()] == ["One"]
    # The retry creates only what is missing.
    result = run(berlin, extraction(one, two), idempotency_key="k")
    assert [(e["summary"], e["created"]) for e in result.events] == [("One", False), ("Two", True)]
    assert sorted(e["summary"] for e in fake_google.live_events()) == ["One", "Two"]


# --- Invalid extractions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ("not json", None, "not valid JSON"),
        ({"status": "maybe", "question": None, "events": []}, "status", "Input should be 'events' or"),
        ({"status": "needs_clarification", "question": None, "events": []}, "question", "needs a question"),
        ({"status": "events", "question": None, "events": []}, "events", "At least one event"),
        (extraction({**event(), "colour": "red"}), "events[0].colour", "Extra inputs are not permitted"),
        (extraction(event(all_day="yes")), "events[0].all_day", "Input should be a valid boolean"),
        (extraction(event(recurrence=weekly(count=0))), "events[0].recurrence.count", "greater than or equal to 1"),
        (
            extraction(event(recurrence=weekly(by_weekday=["TU", "TUE"]))),
            "events[0].recurrence.by_weekday[1]",
            "'MO', 'TU'",
        ),
        (extraction(event(recurrence=weekly(count=3, until="2025-06-30"))), "events[0].recurrence", "not both"),
        (extraction(event(), event(start="next tuesday")), "events[1].start", "Use a date-time"),
        (extraction(event(timezone="Berlin")), "events[0].timezone", "not an IANA timezone"),
        (extraction(event(attendees=["team at example"])), "events[0].attendees", "not a valid email"),
        (extraction(event(start="2025-03-30T02:30:00")), "events[0].start", "does not exist in Europe/Berlin"),
        (extraction(event(end="2025-04-01T12:00:00")), "events[0].end", "after the start"),
    ],
    ids=[
        "not-json",
        "bad-status",
        "no-question",
        "no-events",
        "extra-property",
        "wrong-type",
        "zero-count",
        "bad-weekday",
        "count-and-until",
        "unresolved-date",
        "bad-timezone",
        "bad-attendee",
        "dst-gap",
        "end-before-start",
    ],
)
def test_invalid_extractions_are_422(connected, berlin, fake_google, data, path, message):
    before = list(fake_google.requests)
    with pytest.raises(CalendarExtractionInvalid) as caught:
        run(berlin, data)
    error = caught.value
    assert error.status == 422 and error.code == "calendar_extraction_invalid"
    if path is None:
        assert message in error.message
    else:
        assert any(message in text for text in error.details[path]), error.details
    assert fake_google.requests == before  # nothing reached Google


def test_the_model_and_the_schema_the_llm_is_given_agree():
    """The pydantic model validates the answer; EVENT_EXTRACTION_SCHEMA describes it to the LLM: same fields."""
    from calendars.schemas import EventExtraction, ExtractedEvent, RecurrenceSpec

    answer = EVENT_EXTRACTION_SCHEMA
    event_schema = answer["properties"]["events"]["items"]
    for model, schema in (
        (EventExtraction, answer),
        (ExtractedEvent, event_schema),
        (RecurrenceSpec, event_schema["properties"]["recurrence"]),
    ):
        assert sorted(model.model_fields) == sorted(schema["properties"]), model
    assert EventExtraction.model_config["extra"] == "forbid" and EventExtraction.model_config["strict"] is True


def test_extraction_as_json_text_and_model(connected, berlin):
    from calendars.schemas import event_extraction_parse

    text = json.dumps(extraction(event(start="2025-05-05T10:00:00")))
    parsed = event_extraction_parse(text)
    assert parsed.events[0].start == "2025-05-05T10:00:00"
    assert run(berlin, parsed, dry_run=True).events[0]["start"] == "2025-05-05T10:00:00+02:00"
