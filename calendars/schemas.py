"""The structured output the LLM returns for natural-language scheduling, and its validation.

The LLM gateway passes `EVENT_EXTRACTION_SCHEMA` (named `EVENT_EXTRACTION_SCHEMA_NAME`) as the JSON schema of
its structured output, with `extraction_instructions(...)` as the system prompt, then hands the parsed JSON to
`calendars.services.calendar_events_from_extraction`.

The schema is strict-mode friendly (OpenAI `strict: true`, Anthropic tool input): every property is required,
optional values are nullable, no additional properties, and no keywords beyond type/enum/items/properties.
Constraints the schema cannot express (date formats, IANA names, emails) are checked by the server.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from calendars.errors import CalendarExtractionInvalid
from calendars.mapping import EventInput, is_valid_timezone

EVENT_EXTRACTION_SCHEMA_NAME = "calendar_events"

WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
FREQUENCIES = ["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]

_RECURRENCE_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "How the event repeats, or null for a one-off event.",
    "properties": {
        "frequency": {"type": "string", "enum": FREQUENCIES},
        "interval": {"type": ["integer", "null"], "description": "Every N periods (1 or more); null means 1."},
        "by_weekday": {
            "type": "array",
            "items": {"type": "string", "enum": WEEKDAYS},
            "description": 'Weekdays for WEEKLY rules, e.g. ["TU"]; empty means the start\'s weekday.',
        },
        "count": {"type": ["integer", "null"], "description": "Number of occurrences, or null."},
        "until": {"type": ["string", "null"], "description": "Last date YYYY-MM-DD (inclusive), or null."},
    },
    "required": ["frequency", "interval", "by_weekday", "count", "until"],
    "additionalProperties": False,
}

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "description": 'A short title, e.g. "Team lunch".'},
        "description": {"type": ["string", "null"]},
        "location": {"type": ["string", "null"]},
        "all_day": {"type": "boolean", "description": "True when no time of day is given (whole-day events)."},
        "start": {
            "type": "string",
            "description": (
                "Local wall-clock start in the event's timezone, without an offset: YYYY-MM-DDTHH:MM:SS for timed "
                'events, YYYY-MM-DD for all-day events. Resolve relative dates ("next Tuesday") from the '
                "current date given in the instructions."
            ),
        },
        "end": {
            "type": ["string", "null"],
            "description": (
                "Same format as start. For all-day events: the LAST day of the event (inclusive). Null when no "
                "end or duration is given (one hour for timed events, one day for all-day events)."
            ),
        },
        "timezone": {
            "type": ["string", "null"],
            "description": 'IANA timezone only when the text names one ("3pm New York time"); else null.',
        },
        "attendees": {"type": "array", "items": {"type": "string"}, "description": "Email addresses to invite."},
        "recurrence": _RECURRENCE_SCHEMA,
    },
    "required": [
        "summary",
        "description",
        "location",
        "all_day",
        "start",
        "end",
        "timezone",
        "attendees",
        "recurrence",
    ],
    "additionalProperties": False,
}

EVENT_EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {
            "type": "string",
            "enum": ["events", "needs_clarification"],
            "description": (
                '"events" when every event has a definite date (and time, unless all-day); '
                '"needs_clarification" when the text is ambiguous ("sometime next week"): do not guess.'
            ),
        },
        "question": {
            "type": ["string", "null"],
            "description": "With needs_clarification: one short question to ask the user. Otherwise null.",
        },
        "events": {"type": "array", "items": _EVENT_SCHEMA, "description": "Empty with needs_clarification."},
    },
    "required": ["status", "question", "events"],
    "additionalProperties": False,
}


def extraction_instructions(*, now: datetime, timezone_name: str) -> str:
    """The system prompt: the current time as ISO with its offset, the weekday, and the user's timezone.
    `now` must be aware and expressed in `timezone_name` (e.g. `timezone.now().astimezone(ZoneInfo(tz))`)."""
    return (
        "You turn a request to schedule something into calendar events, as JSON matching the given schema.\n"
        f"The current time is {now.isoformat(timespec='seconds')} ({now:%A}); the user's timezone is "
        f"{timezone_name}.\n"
        'Resolve relative dates and times ("tomorrow", "next Tuesday at 1") to explicit local dates and times '
        'in that timezone and write them without an offset. "Next <weekday>" means that weekday in the coming '
        "week. Set timezone only when the text names another one.\n"
        'If the date or time is too vague to pick one ("sometime next week", "soon"), answer with status '
        '"needs_clarification" and one short question instead of guessing.\n'
        "Only include attendees whose email addresses appear in the text."
    )


@dataclass(frozen=True)
class RecurrenceSpec:
    frequency: str
    interval: int | None = None
    by_weekday: list[str] = field(default_factory=list)
    count: int | None = None
    until: str | None = None


@dataclass(frozen=True)
class ExtractedEvent:
    summary: str
    start: str
    all_day: bool = False
    end: str | None = None
    description: str | None = None
    location: str | None = None
    timezone: str | None = None
    attendees: list[str] = field(default_factory=list)
    recurrence: RecurrenceSpec | None = None

    def rrule_lines(self, timezone_name: str) -> list[str]:
        """The RRULE line for `recurrence`. UNTIL is the end of that day: a date for all-day events, else the
        last second of that day in the event's timezone, in UTC (as RFC 5545 and Google want)."""
        rule = self.recurrence
        if rule is None:
            return []
        parts = [f"FREQ={rule.frequency}"]
        if rule.interval and rule.interval > 1:
            parts.append(f"INTERVAL={rule.interval}")
        if rule.by_weekday:
            parts.append("BYDAY=" + ",".join(rule.by_weekday))
        if rule.count:
            parts.append(f"COUNT={rule.count}")
        if rule.until:
            parts.append(f"UNTIL={_until(rule.until, all_day=self.all_day, timezone_name=timezone_name)}")
        return ["RRULE:" + ";".join(parts)]

    def to_input(self, *, default_timezone: str) -> EventInput:
        timezone_name = self.timezone or default_timezone
        return EventInput(
            summary=self.summary,
            start=self.start,
            end=self.end,
            all_day=self.all_day,
            timezone=timezone_name,
            description=self.description or "",
            location=self.location or "",
            attendees=list(self.attendees),
            recurrence=self.rrule_lines(timezone_name),
            end_inclusive=True,
        )


def _until(value: str, *, all_day: bool, timezone_name: str) -> str:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return value  # left as given: the RRULE check reports it
    if all_day:
        return f"{day:%Y%m%d}"
    if not is_valid_timezone(timezone_name):
        return f"{day:%Y%m%d}T235959Z"  # the timezone itself is reported as invalid
    last_second = datetime.combine(day, time(23, 59, 59), tzinfo=ZoneInfo(timezone_name)).astimezone(UTC)
    return f"{last_second:%Y%m%dT%H%M%SZ}"


@dataclass(frozen=True)
class EventExtraction:
    status: str
    question: str | None = None
    events: list[ExtractedEvent] = field(default_factory=list)


class _Problems:
    def __init__(self):
        self.items: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.items.setdefault(path, []).append(message)


def _expect(value, kinds, path: str, problems: _Problems, *, nullable: bool = False):
    if value is None and nullable:
        return None
    # bool is an int in Python; an integer field must not take true/false.
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in _as_tuple(kinds)):
        return value
    names = "/".join(k.__name__ for k in _as_tuple(kinds)) + (" or null" if nullable else "")
    problems.add(path, f"Expected {names}, got {type(value).__name__}.")
    return None


def _as_tuple(kinds) -> tuple:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _keys(data: dict, allowed: list[str], path: str, problems: _Problems) -> None:
    for key in data:
        if key not in allowed:
            problems.add(f"{path}{key}", "Unknown property.")


def _parse_recurrence(data, path: str, problems: _Problems) -> RecurrenceSpec | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        problems.add(path, "Expected an object or null.")
        return None
    _keys(data, _RECURRENCE_SCHEMA["required"], f"{path}.", problems)
    frequency = data.get("frequency")
    if frequency not in FREQUENCIES:
        problems.add(f"{path}.frequency", f"One of {', '.join(FREQUENCIES)}.")
    interval = _expect(data.get("interval"), int, f"{path}.interval", problems, nullable=True)
    if interval is not None and interval < 1:
        problems.add(f"{path}.interval", "At least 1.")
    weekdays = _expect(data.get("by_weekday", []), list, f"{path}.by_weekday", problems) or []
    for day in weekdays:
        if day not in WEEKDAYS:
            problems.add(f"{path}.by_weekday", f"{day!r} is not one of {', '.join(WEEKDAYS)}.")
    count = _expect(data.get("count"), int, f"{path}.count", problems, nullable=True)
    if count is not None and count < 1:
        problems.add(f"{path}.count", "At least 1.")
    until = _expect(data.get("until"), str, f"{path}.until", problems, nullable=True)
    if until is not None:
        try:
            date.fromisoformat(until)
        except ValueError:
            problems.add(f"{path}.until", "Use a date like 2025-06-30.")
    if count and until:
        problems.add(path, "Give count or until, not both.")
    return RecurrenceSpec(
        frequency=frequency or "",
        interval=interval,
        by_weekday=[d for d in weekdays if d in WEEKDAYS],
        count=count,
        until=until,
    )


def _parse_event(data, path: str, problems: _Problems) -> ExtractedEvent | None:
    if not isinstance(data, dict):
        problems.add(path, "Expected an object.")
        return None
    _keys(data, _EVENT_SCHEMA["required"], f"{path}.", problems)
    summary = _expect(data.get("summary"), str, f"{path}.summary", problems)
    start = _expect(data.get("start"), str, f"{path}.start", problems)
    all_day = _expect(data.get("all_day", False), bool, f"{path}.all_day", problems)
    attendees = _expect(data.get("attendees", []), list, f"{path}.attendees", problems) or []
    for index, email in enumerate(attendees):
        _expect(email, str, f"{path}.attendees[{index}]", problems)
    optional = {
        name: _expect(data.get(name), str, f"{path}.{name}", problems, nullable=True)
        for name in ("end", "description", "location", "timezone")
    }
    recurrence = _parse_recurrence(data.get("recurrence"), f"{path}.recurrence", problems)
    if summary is None or start is None:
        return None
    return ExtractedEvent(
        summary=summary,
        start=start,
        all_day=bool(all_day),
        attendees=[a for a in attendees if isinstance(a, str)],
        recurrence=recurrence,
        **optional,
    )


def event_extraction_parse(data: dict | str) -> EventExtraction:
    """Check the LLM's JSON against `EVENT_EXTRACTION_SCHEMA` (shape and types) and return dataclasses.
    Raises 422 `calendar_extraction_invalid` with a path per problem. Dates, zones and emails are checked when
    the events are mapped."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError:
            raise CalendarExtractionInvalid("The extraction is not valid JSON.") from None
    problems = _Problems()
    if not isinstance(data, dict):
        raise CalendarExtractionInvalid("The extraction must be a JSON object.")
    _keys(data, EVENT_EXTRACTION_SCHEMA["required"], "", problems)
    status = data.get("status")
    if status not in ("events", "needs_clarification"):
        problems.add("status", 'Either "events" or "needs_clarification".')
    question = _expect(data.get("question"), str, "question", problems, nullable=True)
    raw_events = _expect(data.get("events", []), list, "events", problems) or []
    events = [_parse_event(item, f"events[{index}]", problems) for index, item in enumerate(raw_events)]
    if status == "needs_clarification" and not (question or "").strip():
        problems.add("question", "A clarification needs a question.")
    if status == "events" and not raw_events:
        problems.add("events", "At least one event, or status needs_clarification.")
    if problems.items:
        raise CalendarExtractionInvalid(details=problems.items)
    if status == "needs_clarification":
        return EventExtraction(status=status, question=question.strip(), events=[])
    return EventExtraction(status="events", question=None, events=[e for e in events if e is not None])
