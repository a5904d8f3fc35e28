"""The structured output the LLM returns for natural-language scheduling: its pydantic model (`EventExtraction`,
which validates the answer) and the JSON schema the LLM is given.

The LLM gateway passes `EVENT_EXTRACTION_SCHEMA` (named `EVENT_EXTRACTION_SCHEMA_NAME`) as the JSON schema of
its structured output, with `extraction_instructions(...)` as the system prompt, then hands the parsed JSON to
`calendars.services.calendar_events_from_extraction`.

The schema is strict-mode friendly (OpenAI `strict: true`, Anthropic tool input): every property is required,
optional values are nullable, no additional properties, and no keywords beyond type/enum/items/properties.
Constraints the schema cannot express (date formats, IANA names, emails) are checked by the server.
"""

import json
from datetime import UTC, date, datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from calendars.errors import CalendarExtractionInvalid
from calendars.mapping import EventInput, is_valid_timezone
from common.validation import pydantic_details

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


class _Output(BaseModel):
    """The LLM's answer is taken at its declared JSON types (strict: "yes" is not a boolean), with nothing extra."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RecurrenceSpec(_Output):
    frequency: Literal[tuple(FREQUENCIES)]  # type: ignore[valid-type]
    interval: int | None = Field(default=None, ge=1)
    by_weekday: list[Literal[tuple(WEEKDAYS)]] = Field(default_factory=list)  # type: ignore[valid-type]
    count: int | None = Field(default=None, ge=1)
    until: str | None = None

    @field_validator("until")
    @classmethod
    def _until_is_a_date(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError("Use a date like 2025-06-30.") from None
        return value


class ExtractedEvent(_Output):
    summary: str
    start: str
    all_day: bool = False
    end: str | None = None
    description: str | None = None
    location: str | None = None
    timezone: str | None = None
    attendees: list[str] = Field(default_factory=list)
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


class EventExtraction(_Output):
    """The structured output the LLM answers with (`EVENT_EXTRACTION_SCHEMA` describes the same to the LLM)."""

    status: Literal["events", "needs_clarification"]
    question: str | None = None
    events: list[ExtractedEvent] = Field(default_factory=list)


def _meaning_problems(extraction: EventExtraction) -> dict[str, list[str]]:
    """What the types cannot say: a clarification has a question, events have at least one, a rule ends once."""
    problems: dict[str, list[str]] = {}
    if extraction.status == "needs_clarification" and not (extraction.question or "").strip():
        problems["question"] = ["A clarification needs a question."]
    if extraction.status == "events" and not extraction.events:
        problems["events"] = ["At least one event, or status needs_clarification."]
    for index, event in enumerate(extraction.events):
        if event.recurrence is not None and event.recurrence.count and event.recurrence.until:
            problems[f"events[{index}].recurrence"] = ["Give count or until, not both."]
    return problems


def event_extraction_parse(data: dict | str) -> EventExtraction:
    """Validate the LLM's JSON with the `EventExtraction` model (shape and types). Raises 422
    `calendar_extraction_invalid` with a path per problem (`events[0].start`). Dates, zones and emails are checked
    when the events are mapped."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError:
            raise CalendarExtractionInvalid("The extraction is not valid JSON.") from None
    if not isinstance(data, dict):
        raise CalendarExtractionInvalid("The extraction must be a JSON object.")
    try:
        extraction = EventExtraction.model_validate(data)
    except ValidationError as exc:
        raise CalendarExtractionInvalid(details=pydantic_details(exc, brackets=True)) from None
    problems = _meaning_problems(extraction)
    if problems:
        raise CalendarExtractionInvalid(details=problems)
    if extraction.status == "needs_clarification":
        return EventExtraction(status="needs_clarification", question=extraction.question.strip())
    return extraction
