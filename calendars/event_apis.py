"""The events API under /api/v1/calendar/events: thin views that parse, call one service, and serialize."""

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from calendars import mapping, services
from calendars.apis import CalendarApi, validated
from calendars.openapi import (
    API_ERRORS,
    COMMON_ERRORS,
    EVENT_EXAMPLE,
    INVALID,
    NOT_FOUND,
    CalendarEventSerializer,
    error_example,
    error_responses,
)
from common.errors import InvalidRequest
from common.idempotency_keys import idempotency_key_from_headers
from common.openapi import IDEMPOTENCY_PARAMETER
from common.serializers import StrictInputSerializer

EVENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,1024}$")
SEND_UPDATES = ["none", "all", "externalOnly"]


def _event_id(value: str) -> str:
    if not EVENT_ID_PATTERN.match(value):
        raise InvalidRequest("Not a Google event id.", details={"event_id": ["Letters, digits, _ and - only."]})
    return value


class CalendarEventsApi(CalendarApi):
    class ListInputSerializer(serializers.Serializer):
        time_min = serializers.CharField(required=False, default="", help_text="Start of the range (inclusive).")
        time_max = serializers.CharField(required=False, default="", help_text="End of the range (exclusive).")
        q = serializers.CharField(required=False, default="", max_length=500, help_text="Free-text search.")
        page_token = serializers.CharField(required=False, default="", max_length=2000)
        calendar_id = serializers.CharField(required=False, default="primary", max_length=500)
        max_results = serializers.IntegerField(required=False, default=50, min_value=1, max_value=2500)
        single_events = serializers.BooleanField(
            required=False, default=True, help_text="Expand recurring events into instances (ordered by start)."
        )
        timezone = serializers.CharField(
            required=False, default="", help_text="IANA zone for bounds without an offset (default: yours)."
        )

    class CalendarEventPageSerializer(serializers.Serializer):
        events = CalendarEventSerializer(many=True)
        next_page_token = serializers.CharField(allow_null=True)
        timezone = serializers.CharField(help_text="The calendar's timezone.")

    class CalendarEventCreateSerializer(StrictInputSerializer):
        summary = serializers.CharField(max_length=mapping.SUMMARY_MAX_LENGTH, trim_whitespace=True)
        start = serializers.CharField(
            help_text="`2025-04-01T13:00` (wall-clock time in `timezone`), `2025-04-01T13:00:00+02:00`, or a date "
            "`2025-04-01` with `all_day`."
        )
        end = serializers.CharField(help_text="Same form as start. All-day ends are exclusive (the day after).")
        all_day = serializers.BooleanField(required=False, default=False)
        timezone = serializers.CharField(required=False, default="", help_text="IANA name; default: yours.")
        description = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=mapping.DESCRIPTION_MAX_LENGTH
        )
        location = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=mapping.LOCATION_MAX_LENGTH
        )
        attendees = serializers.ListField(
            child=serializers.EmailField(), required=False, default=list, max_length=mapping.MAX_ATTENDEES
        )
        recurrence = serializers.ListField(
            child=serializers.CharField(max_length=1000),
            required=False,
            default=list,
            max_length=mapping.MAX_RECURRENCE_LINES,
            help_text="RFC 5545 lines, e.g. `RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=10`.",
        )
        calendar_id = serializers.CharField(required=False, default="primary", max_length=500)
        send_updates = serializers.ChoiceField(choices=SEND_UPDATES, required=False, default="none")

    @extend_schema(
        summary="List events",
        operation_id="calendar_events_list",
        description="Events of a calendar (default `primary`) overlapping a time range, optionally matching a text "
        "query, one page at a time (`next_page_token`). Bounds without an offset are read in your timezone; a "
        "date alone means its midnight.",
        tags=["calendar"],
        parameters=[ListInputSerializer],
        responses={200: CalendarEventPageSerializer, **error_responses(*API_ERRORS)},
        examples=[
            OpenApiExample(
                "A page of events",
                response_only=True,
                value={"events": [EVENT_EXAMPLE], "next_page_token": None, "timezone": "Europe/Berlin"},
            ),
            *COMMON_ERRORS,
        ],
    )
    def get(self, request):
        data = validated(self.ListInputSerializer, request.query_params)
        result = services.calendar_events_list(
            user=request.user,
            calendar_id=data["calendar_id"],
            time_min=data["time_min"],
            time_max=data["time_max"],
            query=data["q"],
            page_token=data["page_token"],
            max_results=data["max_results"],
            single_events=data["single_events"],
            timezone_name=data["timezone"] or None,
        )
        return Response(self.CalendarEventPageSerializer(result).data)

    @extend_schema(
        summary="Create an event",
        description=(
            "Creates an event. Timed events take date-times (a wall-clock time is read in `timezone`, default "
            "your preference, with the right DST offset); all-day events take dates with an exclusive end. "
            "Attendee emails, the IANA timezone and RRULE lines are validated.\n\nSend an `Idempotency-Key` "
            "header to make retries safe: the key gives a deterministic Google event id, so a retry answers 200 "
            "with the event the first try created (header `Idempotent-Replayed: true`) instead of a duplicate. "
            "Reusing a key for a different event answers 409 `idempotency_key_reused`."
        ),
        tags=["calendar"],
        parameters=[IDEMPOTENCY_PARAMETER],
        request=CalendarEventCreateSerializer,
        responses={
            201: CalendarEventSerializer,
            200: OpenApiResponse(CalendarEventSerializer, description="Idempotent replay: the event already existed."),
            **error_responses(*API_ERRORS),
        },
        examples=[
            OpenApiExample(
                "Timed event with an attendee",
                request_only=True,
                value={
                    "summary": "Team lunch",
                    "start": "2025-04-01T13:00",
                    "end": "2025-04-01T14:00",
                    "timezone": "Europe/Berlin",
                    "location": "Canteen",
                    "attendees": ["team@example.com"],
                },
            ),
            OpenApiExample(
                "Weekly all-day event",
                request_only=True,
                value={
                    "summary": "Office day",
                    "start": "2025-04-01",
                    "end": "2025-04-02",
                    "all_day": True,
                    "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=10"],
                },
            ),
            OpenApiExample("Created", response_only=True, status_codes=["201"], value=EVENT_EXAMPLE),
            INVALID,
            error_example(
                "Key reused",
                409,
                "idempotency_key_reused",
                "This Idempotency-Key was already used for a different event.",
                {"event_id": "j1ua5bkhr3ptv0c9dbe9m0ng6ocmhfeh8n0ke3gu4ctj4on1hqvg"},
            ),
            *COMMON_ERRORS,
        ],
    )
    def post(self, request):
        key = idempotency_key_from_headers(request.headers)
        data = validated(self.CalendarEventCreateSerializer, request.data)
        event, created = services.calendar_event_create(
            user=request.user,
            data=mapping.EventInput(
                summary=data["summary"],
                start=data["start"],
                end=data["end"],
                all_day=data["all_day"],
                timezone=data["timezone"] or None,
                description=data["description"],
                location=data["location"],
                attendees=data["attendees"],
                recurrence=data["recurrence"],
            ),
            calendar_id=data["calendar_id"],
            idempotency_key=key,
            send_updates=data["send_updates"],
        )
        response = Response(CalendarEventSerializer(event).data, status=201 if created else 200)
        if key is not None:
            response["Idempotent-Replayed"] = "false" if created else "true"
        return response


class CalendarEventDetailApi(CalendarApi):
    class QuerySerializer(serializers.Serializer):
        calendar_id = serializers.CharField(required=False, default="primary", max_length=500)
        send_updates = serializers.ChoiceField(
            choices=SEND_UPDATES, required=False, default="none", help_text="Notify attendees (PATCH, DELETE)."
        )

    class CalendarEventPatchSerializer(StrictInputSerializer):
        summary = serializers.CharField(required=False, max_length=mapping.SUMMARY_MAX_LENGTH)
        start = serializers.CharField(required=False, help_text="Send start and end together.")
        end = serializers.CharField(required=False)
        all_day = serializers.BooleanField(required=False)
        timezone = serializers.CharField(required=False)
        description = serializers.CharField(required=False, allow_blank=True, max_length=mapping.DESCRIPTION_MAX_LENGTH)
        location = serializers.CharField(required=False, allow_blank=True, max_length=mapping.LOCATION_MAX_LENGTH)
        attendees = serializers.ListField(
            child=serializers.EmailField(), required=False, max_length=mapping.MAX_ATTENDEES
        )
        recurrence = serializers.ListField(
            child=serializers.CharField(max_length=1000), required=False, max_length=mapping.MAX_RECURRENCE_LINES
        )

    event_id_parameter = OpenApiParameter(
        "event_id", OpenApiTypes.STR, location=OpenApiParameter.PATH, description="Google's event id."
    )

    @extend_schema(
        summary="Get an event",
        description="One event of a calendar (default `primary`).",
        tags=["calendar"],
        parameters=[event_id_parameter, QuerySerializer],
        responses={200: CalendarEventSerializer, **error_responses(404, *API_ERRORS)},
        examples=[OpenApiExample("Event", response_only=True, value=EVENT_EXAMPLE), NOT_FOUND, *COMMON_ERRORS],
    )
    def get(self, request, event_id: str):
        query = validated(self.QuerySerializer, request.query_params)
        event = services.calendar_event_get(
            user=request.user, event_id=_event_id(event_id), calendar_id=query["calendar_id"]
        )
        return Response(CalendarEventSerializer(event).data)

    @extend_schema(
        summary="Change an event",
        description="Changes only the fields sent. To move an event send `start` and `end` together (with "
        "`all_day` / `timezone` as for creating); the same validation applies.",
        tags=["calendar"],
        parameters=[event_id_parameter, QuerySerializer],
        request=CalendarEventPatchSerializer,
        responses={200: CalendarEventSerializer, **error_responses(404, *API_ERRORS)},
        examples=[
            OpenApiExample(
                "Move by an hour",
                request_only=True,
                value={"start": "2025-04-01T14:00", "end": "2025-04-01T15:00", "timezone": "Europe/Berlin"},
            ),
            OpenApiExample("Changed", response_only=True, value=EVENT_EXAMPLE),
            INVALID,
            NOT_FOUND,
            *COMMON_ERRORS,
        ],
    )
    def patch(self, request, event_id: str):
        query = validated(self.QuerySerializer, request.query_params)
        fields = validated(self.CalendarEventPatchSerializer, request.data)
        event = services.calendar_event_update(
            user=request.user,
            event_id=_event_id(event_id),
            fields=dict(fields),
            calendar_id=query["calendar_id"],
            send_updates=query["send_updates"],
        )
        return Response(CalendarEventSerializer(event).data)

    @extend_schema(
        summary="Delete an event",
        description="Deletes (cancels) the event. Deleting it again answers 404.",
        tags=["calendar"],
        parameters=[event_id_parameter, QuerySerializer],
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(404, *API_ERRORS)},
        examples=[NOT_FOUND, *COMMON_ERRORS],
    )
    def delete(self, request, event_id: str):
        query = validated(self.QuerySerializer, request.query_params)
        services.calendar_event_delete(
            user=request.user,
            event_id=_event_id(event_id),
            calendar_id=query["calendar_id"],
            send_updates=query["send_updates"],
        )
        return Response(status=204)
