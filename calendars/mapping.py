"""Pure mapping between djllm's event input and Google Calendar event resources (no I/O).

Timed events are resolved with `zoneinfo`: a wall-clock time without an offset is read in the event's IANA
timezone, with that day's offset (so DST is right), and sent as `dateTime` with the offset plus `timeZone`
(Google needs the zone to expand recurrences). All-day events use `date` with an exclusive end, as Google does.
"""

import base64
import hashlib
import json
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from dateutil.rrule import rrulestr
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from common.errors import InvalidRequest
from common.validation import invalid_request

SUMMARY_MAX_LENGTH = 500
DESCRIPTION_MAX_LENGTH = 8000
LOCATION_MAX_LENGTH = 1000
MAX_ATTENDEES = 100
MAX_RECURRENCE_LINES = 20
RECURRENCE_PREFIXES = ("RRULE:", "EXRULE:", "RDATE", "EXDATE")
IDEMPOTENCY_PROPERTY = "djllmRequestFingerprint"


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_valid_timezone(name: str) -> bool:
    return isinstance(name, str) and name in _zones()


@dataclass
class EventInput:
    """One event as callers describe it. `start`/`end` are ISO strings:

    - timed: `YYYY-MM-DDTHH:MM[:SS]` (wall-clock time in `timezone`) or with an offset / `Z` (an instant);
    - all-day: `YYYY-MM-DD`; `end` is exclusive (the day after the last day), as in Google, unless
      `end_inclusive` is set (the natural-language flow says "the last day").
    A missing `end` means `default_duration_minutes` for timed events and one day for all-day events.
    """

    summary: str
    start: str
    end: str | None = None
    all_day: bool = False
    timezone: str | None = None
    description: str = ""
    location: str = ""
    attendees: list[str] = field(default_factory=list)
    recurrence: list[str] = field(default_factory=list)
    end_inclusive: bool = False
    default_duration_minutes: int = 60


class _Errors:
    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.items: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.items.setdefault(f"{self.prefix}{name}", []).append(message)

    def raise_if_any(self) -> None:
        if self.items:
            raise invalid_request(self.items)


def localize(wall: datetime, tz_name: str) -> datetime:
    """A naive wall-clock time in `tz_name` -> aware. Nonexistent times (the DST gap) are refused;
    ambiguous ones (the repeated hour) take the first occurrence (fold=0)."""
    tz = zoneinfo.ZoneInfo(tz_name)
    aware = wall.replace(tzinfo=tz, fold=0)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
        raise ValueError(f"{wall:%Y-%m-%d %H:%M} does not exist in {tz_name} (the clocks skip it for DST).")
    return aware


def _parse_date(value: str) -> date:
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("Use a date like 2025-03-10 for all-day events.")
    return date.fromisoformat(value)


def _parse_datetime(value: str, tz_name: str) -> datetime:
    if not isinstance(value, str) or len(value) < 16 or "T" not in value.upper():
        raise ValueError("Use a date-time like 2025-03-10T15:00 (or set all_day for a date).")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return localize(parsed, tz_name)
    return parsed


def _validate_recurrence(lines: list[str], start: date | datetime | None, errors: _Errors) -> list[str]:
    if len(lines) > MAX_RECURRENCE_LINES:
        errors.add("recurrence", f"At most {MAX_RECURRENCE_LINES} lines.")
        return lines
    if start is None:  # the series' own start is unknown (a PATCH of the rule alone): either kind may do
        anchors = [datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 1)]
    elif isinstance(start, datetime):
        anchors = [start.astimezone(UTC)]
    else:
        anchors = [datetime.combine(start, datetime.min.time())]
    cleaned = []
    for line in lines:
        line = (line or "").strip()
        if not line.upper().startswith(RECURRENCE_PREFIXES):
            errors.add("recurrence", f"{line!r}: each line starts with RRULE:, EXRULE:, RDATE or EXDATE.")
            continue
        upper = line.upper()
        if upper.startswith("RRULE:") and ";COUNT=" in f";{upper[6:]}" and ";UNTIL=" in f";{upper[6:]}":
            errors.add("recurrence", f"{line!r}: COUNT and UNTIL cannot both be given.")
            continue
        problem = None
        for anchor in anchors:
            try:
                rrulestr(line, dtstart=anchor, forceset=True)
            except (ValueError, TypeError) as exc:
                problem = problem or str(exc)
            else:
                problem = None
                break
        if problem:
            errors.add("recurrence", f"{line!r}: {problem}")
            continue
        cleaned.append(line)
    return cleaned


def _validate_attendees(attendees: list[str], errors: _Errors) -> list[str]:
    if len(attendees) > MAX_ATTENDEES:
        errors.add("attendees", f"At most {MAX_ATTENDEES} attendees.")
    cleaned: list[str] = []
    for email in attendees:
        email = (email or "").strip()
        try:
            validate_email(email)
        except ValidationError:
            errors.add("attendees", f"{email!r} is not a valid email address.")
            continue
        if email.lower() not in {e.lower() for e in cleaned}:
            cleaned.append(email)
    return cleaned


def _times(data: EventInput, tz_name: str, errors: _Errors) -> tuple[date | datetime | None, date | datetime | None]:
    parse = _parse_date if data.all_day else (lambda value: _parse_datetime(value, tz_name))
    start = end = None
    try:
        start = parse(data.start)
    except (ValueError, TypeError) as exc:
        errors.add("start", str(exc))
    if data.end not in (None, ""):
        try:
            end = parse(data.end)
        except (ValueError, TypeError) as exc:
            errors.add("end", str(exc))
        if end is not None and data.all_day and data.end_inclusive:
            end = end + timedelta(days=1)
    elif start is not None:
        end = start + (timedelta(days=1) if data.all_day else timedelta(minutes=data.default_duration_minutes))
    if start is not None and end is not None and end <= start:
        errors.add(
            "end", "The end must be after the start" + (" (all-day ends are exclusive)." if data.all_day else ".")
        )
    return start, end


def _when(value: date | datetime, tz_name: str) -> dict:
    if isinstance(value, datetime):
        return {"dateTime": value.isoformat(), "timeZone": tz_name}
    return {"date": value.isoformat()}


def event_body_build(data: EventInput, *, default_timezone: str, errors_prefix: str = "") -> dict:
    """Validate `data` and return the Google event resource for it. Raises `InvalidRequest` with per-field details."""
    errors = _Errors(errors_prefix)
    summary = (data.summary or "").strip()
    if not summary:
        errors.add("summary", "The summary is required.")
    elif len(summary) > SUMMARY_MAX_LENGTH:
        errors.add("summary", f"At most {SUMMARY_MAX_LENGTH} characters.")
    if len(data.description or "") > DESCRIPTION_MAX_LENGTH:
        errors.add("description", f"At most {DESCRIPTION_MAX_LENGTH} characters.")
    if len(data.location or "") > LOCATION_MAX_LENGTH:
        errors.add("location", f"At most {LOCATION_MAX_LENGTH} characters.")
    tz_name = data.timezone or default_timezone
    if not is_valid_timezone(tz_name):
        errors.add("timezone", f"{tz_name!r} is not an IANA timezone name (like Europe/Berlin).")
        errors.raise_if_any()
    start, end = _times(data, tz_name, errors)
    attendees = _validate_attendees(list(data.attendees or []), errors)
    recurrence = _validate_recurrence(list(data.recurrence or []), start, errors) if start is not None else []
    errors.raise_if_any()
    body: dict = {"summary": summary, "start": _when(start, tz_name), "end": _when(end, tz_name)}
    if data.description:
        body["description"] = data.description
    if data.location:
        body["location"] = data.location
    if attendees:
        body["attendees"] = [{"email": email} for email in attendees]
    if recurrence:
        body["recurrence"] = recurrence
    return body


def event_patch_body_build(fields: dict, *, default_timezone: str) -> dict:
    """A Google PATCH body from the fields present. Times are replaced as a whole (start and end together)."""
    errors = _Errors()
    body: dict = {}
    timing = {"start", "end", "all_day", "timezone"} & fields.keys()
    if timing:
        if not {"start", "end"} <= fields.keys():
            errors.add("start", "To change the time, send both start and end (and all_day / timezone if needed).")
            errors.raise_if_any()
        full = event_body_build(
            EventInput(
                summary=fields.get("summary") or "placeholder",
                start=fields["start"],
                end=fields["end"],
                all_day=bool(fields.get("all_day", False)),
                timezone=fields.get("timezone") or None,
                recurrence=list(fields.get("recurrence") or []),
            ),
            default_timezone=default_timezone,
        )
        # PATCH merges nested objects: clear the other representation when switching timed <-> all-day.
        for key in ("start", "end"):
            body[key] = {"date": None, "dateTime": None, "timeZone": None, **full[key]}
    if "summary" in fields:
        summary = (fields["summary"] or "").strip()
        if not summary:
            errors.add("summary", "The summary cannot be blank.")
        elif len(summary) > SUMMARY_MAX_LENGTH:
            errors.add("summary", f"At most {SUMMARY_MAX_LENGTH} characters.")
        body["summary"] = summary
    for name, limit in (("description", DESCRIPTION_MAX_LENGTH), ("location", LOCATION_MAX_LENGTH)):
        if name in fields:
            if len(fields[name] or "") > limit:
                errors.add(name, f"At most {limit} characters.")
            body[name] = fields[name] or ""
    if "attendees" in fields:
        body["attendees"] = [{"email": email} for email in _validate_attendees(list(fields["attendees"]), errors)]
    if "recurrence" in fields and not timing:
        body["recurrence"] = _validate_recurrence(list(fields["recurrence"]), None, errors)
    elif "recurrence" in fields:
        body["recurrence"] = full.get("recurrence", [])
    errors.raise_if_any()
    if not body:
        raise InvalidRequest("Nothing to change: send at least one field.")
    return body


def event_to_output(event: dict) -> dict:
    """Google's event resource -> djllm's flat shape (what the API returns)."""
    start, end = event.get("start") or {}, event.get("end") or {}
    return {
        "id": event.get("id", ""),
        "status": event.get("status", ""),
        "summary": event.get("summary", ""),
        "description": event.get("description", ""),
        "location": event.get("location", ""),
        "all_day": "date" in start and "dateTime" not in start,
        "start": start.get("dateTime") or start.get("date"),
        "end": end.get("dateTime") or end.get("date"),
        "timezone": start.get("timeZone") or "",
        "attendees": [a.get("email", "") for a in event.get("attendees", []) if a.get("email")],
        "recurrence": list(event.get("recurrence", [])),
        "recurring_event_id": event.get("recurringEventId", ""),
        "html_link": event.get("htmlLink", ""),
        "created": event.get("created", ""),
        "updated": event.get("updated", ""),
    }


def idempotent_event_id(*, user_id: int, calendar_id: str, key: str) -> str:
    """A deterministic Google event id: base32hex (0-9, a-v) of SHA-256, 52 characters (Google allows 5-1024)."""
    digest = hashlib.sha256(f"djllm\x00{user_id}\x00{calendar_id}\x00{key}".encode()).digest()
    return base64.b32hexencode(digest).decode().rstrip("=").lower()


def request_fingerprint(body: dict) -> str:
    """Identifies what an idempotent create asked for, so a reused key with another body is caught."""
    canonical = json.dumps({k: v for k, v in body.items() if k not in ("id", "extendedProperties")}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def with_fingerprint(body: dict, fingerprint: str) -> dict:
    private = {**body.get("extendedProperties", {}).get("private", {}), IDEMPOTENCY_PROPERTY: fingerprint}
    return {**body, "extendedProperties": {**body.get("extendedProperties", {}), "private": private}}


def fingerprint_of(event: dict) -> str | None:
    return (event.get("extendedProperties") or {}).get("private", {}).get(IDEMPOTENCY_PROPERTY)


def parse_instant(value: str, tz_name: str) -> datetime:
    """A list bound: a date (its start in `tz_name`), a wall-clock date-time in `tz_name`, or an aware one."""
    if isinstance(value, str) and len(value) == 10:
        day = date.fromisoformat(value)
        return localize(datetime.combine(day, datetime.min.time()), tz_name)
    return _parse_datetime(value, tz_name)
