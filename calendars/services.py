"""Calendar operations: the events API and the natural-language seam (`calendar_events_from_extraction`).
The connection itself (OAuth flow, stored credentials, refresh) is in `calendars.connections`."""

import logging
from dataclasses import dataclass, field

from django.conf import settings

from calendars import mapping
from calendars.connections import CalendarConnection, calendar_connection_open
from calendars.errors import CalendarConflict, CalendarExtractionInvalid, IdempotencyKeyReused
from calendars.mapping import EventInput
from calendars.schemas import EventExtraction, event_extraction_parse
from common.errors import InvalidRequest
from common.validation import invalid_request

logger = logging.getLogger(__name__)


def calendar_timezone_resolve(*, user, requested: str | None = None) -> str:
    """The request's timezone, else the user's preference, else DEFAULT_TIMEZONE."""
    if requested:
        if not mapping.is_valid_timezone(requested):
            raise InvalidRequest(
                f"{requested!r} is not an IANA timezone name (like Europe/Berlin).",
                details={"timezone": ["Not an IANA timezone name."]},
            )
        return requested
    preferences = getattr(user, "preferences", None) if user is not None else None
    preferred = getattr(preferences, "timezone", "") if preferences is not None else ""
    if preferred and mapping.is_valid_timezone(preferred):
        return preferred
    return settings.DEFAULT_TIMEZONE


# --- Events -------------------------------------------------------------------------------------------------


def calendar_events_list(
    *,
    user,
    calendar_id: str = "primary",
    time_min: str = "",
    time_max: str = "",
    query: str = "",
    page_token: str = "",
    max_results: int = 50,
    single_events: bool = True,
    timezone_name: str | None = None,
) -> dict:
    """Events overlapping [time_min, time_max). Bounds without an offset are read in the user's timezone."""
    tz_name = calendar_timezone_resolve(user=user, requested=timezone_name)
    bounds, problems = {}, {}
    for name, value in (("time_min", time_min), ("time_max", time_max)):
        if value:
            try:
                bounds[name] = mapping.parse_instant(value, tz_name)
            except (ValueError, TypeError) as exc:
                problems[name] = [str(exc)]
    if problems:
        raise invalid_request(problems)
    if "time_min" in bounds and "time_max" in bounds and bounds["time_max"] <= bounds["time_min"]:
        raise InvalidRequest("time_max must be after time_min.", details={"time_max": ["Must be after time_min."]})
    params = {"calendarId": calendar_id, "maxResults": max_results, "singleEvents": single_events}
    if single_events:
        params["orderBy"] = "startTime"
    if "time_min" in bounds:
        params["timeMin"] = bounds["time_min"].isoformat()
    if "time_max" in bounds:
        params["timeMax"] = bounds["time_max"].isoformat()
    if query:
        params["q"] = query
    if page_token:
        params["pageToken"] = page_token
    connection = calendar_connection_open(user=user)
    result = connection.call(lambda service: service.events().list(**params))
    return {
        "events": [mapping.event_to_output(event) for event in result.get("items", [])],
        "next_page_token": result.get("nextPageToken") or None,
        "timezone": result.get("timeZone") or "",
    }


def calendar_event_get(*, user, event_id: str, calendar_id: str = "primary") -> dict:
    connection = calendar_connection_open(user=user)
    event = connection.call(lambda service: service.events().get(calendarId=calendar_id, eventId=event_id))
    return mapping.event_to_output(event)


def _insert_idempotent(
    connection: CalendarConnection, *, calendar_id: str, body: dict, event_id: str, send_updates: str
) -> tuple[dict, bool]:
    """Insert with a deterministic id. Google's 409 for that id means an earlier try created it: return that one."""
    fingerprint = mapping.request_fingerprint(body)
    stamped = {**mapping.with_fingerprint(body, fingerprint), "id": event_id}
    try:
        event = connection.call(
            lambda service: service.events().insert(calendarId=calendar_id, body=stamped, sendUpdates=send_updates)
        )
        return event, True
    except CalendarConflict:
        existing = connection.call(lambda service: service.events().get(calendarId=calendar_id, eventId=event_id))
        stored = mapping.fingerprint_of(existing)
        if stored is not None and stored != fingerprint:
            raise IdempotencyKeyReused(details={"event_id": event_id}) from None
        return existing, False


def calendar_event_create(
    *,
    user,
    data: EventInput,
    calendar_id: str = "primary",
    idempotency_key: str | None = None,
    send_updates: str = "none",
) -> tuple[dict, bool]:
    """Create one event. Returns (event, created); `created` is False when an idempotent retry found it."""
    default_tz = calendar_timezone_resolve(user=user)
    body = mapping.event_body_build(data, default_timezone=default_tz)
    connection = calendar_connection_open(user=user)
    if idempotency_key:
        event_id = mapping.idempotent_event_id(user_id=user.pk, calendar_id=calendar_id, key=idempotency_key)
        event, created = _insert_idempotent(
            connection, calendar_id=calendar_id, body=body, event_id=event_id, send_updates=send_updates
        )
    else:
        event = connection.call(
            lambda service: service.events().insert(calendarId=calendar_id, body=body, sendUpdates=send_updates)
        )
        created = True
    return mapping.event_to_output(event), created


def calendar_event_update(
    *, user, event_id: str, fields: dict, calendar_id: str = "primary", send_updates: str = "none"
) -> dict:
    default_tz = calendar_timezone_resolve(user=user)
    body = mapping.event_patch_body_build(fields, default_timezone=default_tz)  # invalid input never reaches Google
    connection = calendar_connection_open(user=user)
    if {"start", "end"} & fields.keys() and not fields.get("timezone"):
        # A new wall-clock time without a zone is meant in the event's own zone, not the user's default.
        current = connection.call(lambda service: service.events().get(calendarId=calendar_id, eventId=event_id))
        own_tz = (current.get("start") or {}).get("timeZone")
        if own_tz and own_tz != default_tz and mapping.is_valid_timezone(own_tz):
            body = mapping.event_patch_body_build(fields, default_timezone=own_tz)
    event = connection.call(
        lambda service: service.events().patch(
            calendarId=calendar_id, eventId=event_id, body=body, sendUpdates=send_updates
        )
    )
    return mapping.event_to_output(event)


def calendar_event_delete(*, user, event_id: str, calendar_id: str = "primary", send_updates: str = "none") -> None:
    connection = calendar_connection_open(user=user)
    connection.call(
        lambda service: service.events().delete(calendarId=calendar_id, eventId=event_id, sendUpdates=send_updates)
    )


# --- Natural language: the seam for the LLM gateway ---------------------------------------------------------


@dataclass(frozen=True)
class ExtractionResult:
    """What `calendar_events_from_extraction` did. `status`: created | preview | needs_clarification."""

    status: str
    question: str | None = None
    events: list[dict] = field(default_factory=list)
    timezone: str = ""

    def to_dict(self) -> dict:
        return {"status": self.status, "question": self.question, "events": self.events, "timezone": self.timezone}


def calendar_events_from_extraction(
    *,
    user,
    extraction: EventExtraction | dict | str,
    timezone_name: str | None = None,
    calendar_id: str = "primary",
    dry_run: bool = False,
    idempotency_key: str | None = None,
    send_updates: str = "none",
) -> ExtractionResult:
    """Map the LLM's structured output (see `calendars.schemas.EVENT_EXTRACTION_SCHEMA`) to Google events and
    create them idempotently, or preview them (`dry_run`), or hand back the clarification question.

    Relative dates are the LLM's job; here wall-clock times are resolved in the event's timezone (the one the
    text named, else `timezone_name` from the request, else the user's preference, else DEFAULT_TIMEZONE).
    Each event gets a deterministic id from `idempotency_key` (or, without one, from the event itself), so a
    retry returns the events already created instead of duplicates.
    """
    parsed = extraction if isinstance(extraction, EventExtraction) else event_extraction_parse(extraction)
    tz_name = calendar_timezone_resolve(user=user, requested=timezone_name)
    if parsed.status == "needs_clarification":
        return ExtractionResult(status="needs_clarification", question=parsed.question, timezone=tz_name)
    bodies = []
    for index, event in enumerate(parsed.events):
        try:
            bodies.append(
                mapping.event_body_build(
                    event.to_input(default_timezone=tz_name),
                    default_timezone=tz_name,
                    errors_prefix=f"events[{index}].",
                )
            )
        except InvalidRequest as exc:
            raise CalendarExtractionInvalid(details=exc.details) from None
    ids = [
        mapping.idempotent_event_id(
            user_id=user.pk,
            calendar_id=calendar_id,
            key=f"{idempotency_key}#{index}" if idempotency_key else f"body:{mapping.request_fingerprint(body)}",
        )
        for index, body in enumerate(bodies)
    ]
    if dry_run:
        previews = [
            {**_preview(body), "id": event_id, "created": False, "google_event": body}
            for body, event_id in zip(bodies, ids, strict=True)
        ]
        return ExtractionResult(status="preview", events=previews, timezone=tz_name)
    connection = calendar_connection_open(user=user)
    results = []
    for body, event_id in zip(bodies, ids, strict=True):
        event, created = _insert_idempotent(
            connection, calendar_id=calendar_id, body=body, event_id=event_id, send_updates=send_updates
        )
        results.append({**mapping.event_to_output(event), "created": created})
    return ExtractionResult(status="created", events=results, timezone=tz_name)


def _preview(body: dict) -> dict:
    return mapping.event_to_output({**body, "status": "preview"})
