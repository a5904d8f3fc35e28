"""The calendar API under /api/v1/calendar/: thin views that parse, call one service, and serialize."""

import re

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import APITokenAuthentication
from accounts.permissions import HasTokenScope
from calendars import mapping, selectors, services
from calendars.config import google_config_get
from calendars.permissions import CalendarTokenOrSession, is_session_request
from common.errors import AppError, InvalidRequest

ACCOUNT_PAGE = "account:page"
EVENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,1024}$")
IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
SEND_UPDATES = ["none", "all", "externalOnly"]


def _error(name: str, status: int, code: str, message: str, details: dict | None = None) -> OpenApiExample:
    return OpenApiExample(
        name,
        status_codes=[str(status)],
        response_only=True,
        value={"error": {"code": code, "message": message, "details": details or {}, "request_id": "3f2c…"}},
    )


class CalendarErrorSerializer(serializers.Serializer):
    class Body(serializers.Serializer):
        code = serializers.CharField()
        message = serializers.CharField()
        details = serializers.DictField()
        request_id = serializers.CharField()

    error = Body()


ERROR_MEANINGS = {
    400: "Invalid input (`invalid_request`) or rejected by Google (`calendar_invalid_request`).",
    403: "The token lacks the `calendar` scope, or Google refused (`calendar_forbidden`).",
    404: "No such event or calendar (`calendar_not_found`).",
    409: "Connect or reconnect first (`calendar_not_connected`, `calendar_reconnect_required`, with "
    "`details.authorization_url`), a Google conflict, or a reused Idempotency-Key.",
    429: "Google's rate limit, after bounded retries (`calendar_rate_limited`, `Retry-After`).",
    502: "Google failed or could not be reached (`calendar_upstream_error`).",
    503: "Google Calendar is not configured (`calendar_not_configured`; `details.missing` names the settings).",
}


def _errors(*statuses: int) -> dict:
    return {status: OpenApiResponse(CalendarErrorSerializer, description=ERROR_MEANINGS[status]) for status in statuses}


API_ERRORS = (400, 403, 409, 429, 502, 503)


NOT_CONFIGURED = _error(
    "Not configured",
    503,
    "calendar_not_configured",
    "Google Calendar is not configured on this server. Set GOOGLE_CLIENT_SECRETS_FILE or GOOGLE_CLIENT_ID + "
    "GOOGLE_CLIENT_SECRET; GOOGLE_TOKEN_ENCRYPTION_KEYS. See docs/google-calendar.md.",
    {"missing": ["GOOGLE_CLIENT_SECRETS_FILE or GOOGLE_CLIENT_ID + GOOGLE_CLIENT_SECRET"]},
)
RECONNECT = _error(
    "Reconnect required",
    409,
    "calendar_reconnect_required",
    "Google no longer accepts the stored authorization. Reconnect: open `details.authorization_url`.",
    {"authorization_url": "https://accounts.google.com/o/oauth2/auth?response_type=code&client_id=…&state=…"},
)
RATE_LIMITED = _error(
    "Rate limited (Retry-After header set)",
    429,
    "calendar_rate_limited",
    "Google Calendar's rate limit was reached; retry after the time in `Retry-After`.",
    {"google_status": 403, "google_reason": "rateLimitExceeded", "google_message": "Rate Limit Exceeded"},
)
UPSTREAM = _error("Google failed", 502, "calendar_upstream_error", "Google Calendar answered 503.")
INVALID = _error(
    "Invalid event",
    400,
    "invalid_request",
    "The event is invalid; see details.",
    {"end": ["The end must be after the start."], "timezone": ["'Mars/Base' is not an IANA timezone name."]},
)
NOT_FOUND = _error("No such event", 404, "calendar_not_found", "Google Calendar: Not Found.")
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


def _validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _event_id(value: str) -> str:
    if not EVENT_ID_PATTERN.match(value):
        raise InvalidRequest("Not a Google event id.", details={"event_id": ["Letters, digits, _ and - only."]})
    return value


class CalendarApi(APIView):
    """Token-authenticated, `calendar` scope; 503 `calendar_not_configured` before anything else is done."""

    permission_classes = [HasTokenScope]
    required_scope = "calendar"

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        google_config_get()


class CalendarAuthApi(APIView):
    authentication_classes = [APITokenAuthentication, SessionAuthentication]
    permission_classes = [CalendarTokenOrSession]

    @extend_schema(
        summary="Start connecting Google Calendar",
        description=(
            "Creates a consent request and returns Google's authorization URL. Open it in a browser where you are "
            "logged in to djllm (`/account/login/`) as the same user; after consent Google sends the browser to "
            "`/api/v1/calendar/oauth2callback`, which stores the connection. The link is single-use and expires "
            "after 10 minutes.\n\nWith an API token the answer is JSON. A person logged in with a session (the "
            "account page's *Connect Google Calendar* button) is redirected to Google instead."
        ),
        tags=["calendar"],
        responses={
            200: inline_serializer("CalendarAuthorization", {"authorization_url": serializers.URLField()}),
            302: OpenApiResponse(description="Session (browser): redirect to Google's consent page."),
            **_errors(403, 503),
        },
        examples=[
            OpenApiExample(
                "Authorization URL",
                response_only=True,
                value={
                    "authorization_url": "https://accounts.google.com/o/oauth2/auth?response_type=code&client_id="
                    "…&redirect_uri=https%3A%2F%2Fdjllm.example.com%2Fapi%2Fv1%2Fcalendar%2Foauth2callback&scope="
                    "https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcalendar.events+openid+…&state=…&code_challenge=…"
                    "&code_challenge_method=S256&access_type=offline&include_granted_scopes=true&prompt=consent"
                },
            ),
            NOT_CONFIGURED,
        ],
    )
    def get(self, request):
        if not is_session_request(request):
            return Response({"authorization_url": services.oauth_authorization_start(user=request.user)})
        try:
            return HttpResponseRedirect(services.oauth_authorization_start(user=request.user))
        except AppError as error:
            messages.error(request._request, error.message)
            return redirect(ACCOUNT_PAGE)


class CalendarOAuthCallbackApi(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Google's OAuth redirect (browser only)",
        description=(
            "Google sends the browser here after the consent screen. djllm checks the state (known, unused, not "
            "expired, started by the logged-in user), exchanges the code with the stored PKCE verifier, checks that "
            "the calendar scope was granted, stores the credentials encrypted, and redirects to `/account/` with a "
            "message. A denied consent or a bad state stores nothing and says why on `/account/`. Without a "
            "session the browser is sent to the login page first."
        ),
        tags=["calendar"],
        auth=[],
        parameters=[
            OpenApiParameter(
                "state",
                OpenApiTypes.STR,
                description="The state djllm put in the authorization URL.",
                examples=[OpenApiExample("State", value="Vl9JCrW7i7f4UBRKvfZH8WEmZ_1ZNa6zQAqE7gUdaeY")],
            ),
            OpenApiParameter(
                "code",
                OpenApiTypes.STR,
                description="Google's authorization code.",
                examples=[OpenApiExample("Code", value="4/0AeanS0b…")],
            ),
            OpenApiParameter(
                "error",
                OpenApiTypes.STR,
                description="Set by Google instead of `code` when the user cancels.",
                examples=[OpenApiExample("Cancelled", value="access_denied")],
            ),
            OpenApiParameter(
                "scope",
                OpenApiTypes.STR,
                description="The scopes the user granted (space-separated).",
                examples=[OpenApiExample("Granted", value="https://www.googleapis.com/auth/calendar.events openid")],
            ),
        ],
        responses={302: OpenApiResponse(description="Redirect to `/account/` (or to the login page).")},
    )
    def get(self, request):
        if request.user is None or not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            credential = services.oauth_callback_complete(
                user=request.user,
                state=request.query_params.get("state", ""),
                code=request.query_params.get("code", ""),
                error=request.query_params.get("error", ""),
            )
        except AppError as error:
            messages.error(request._request, error.message)
            return redirect(ACCOUNT_PAGE)
        who = f" as {credential.email}" if credential.email else ""
        messages.success(request._request, f"Google Calendar connected{who}.")
        return redirect(ACCOUNT_PAGE)


class CalendarStatusApi(CalendarApi):
    class CalendarStatusSerializer(serializers.Serializer):
        connected = serializers.BooleanField()
        status = serializers.ChoiceField(choices=["connected", "needs_reconnect", "not_connected"])
        needs_reconnect = serializers.BooleanField()
        email = serializers.CharField(help_text="The Google account that granted access.")
        scopes = serializers.ListField(child=serializers.CharField())
        connected_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        summary="Google Calendar connection status",
        description="Whether the user is connected, the Google account, the granted scopes, and whether the user "
        "must reconnect (Google refused the stored authorization). Never shows a token.",
        tags=["calendar"],
        responses={200: CalendarStatusSerializer, **_errors(403, 503)},
        examples=[
            OpenApiExample(
                "Connected",
                response_only=True,
                value={
                    "connected": True,
                    "status": "connected",
                    "needs_reconnect": False,
                    "email": "alice@gmail.com",
                    "scopes": ["https://www.googleapis.com/auth/calendar.events", "openid"],
                    "connected_at": "2025-03-27T09:00:00Z",
                },
            ),
            NOT_CONFIGURED,
        ],
    )
    def get(self, request):
        return Response(self.CalendarStatusSerializer(selectors.google_connection_status(user=request.user)).data)


class CalendarRevokeApi(APIView):
    authentication_classes = [APITokenAuthentication, SessionAuthentication]
    permission_classes = [CalendarTokenOrSession]
    # The account page's Disconnect button posts a form (its CSRF token is read from it); the body is not used.
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    class CalendarRevokeSerializer(serializers.Serializer):
        deleted = serializers.BooleanField(help_text="Whether local credentials existed and were deleted.")
        google_revoked = serializers.BooleanField(help_text="Whether Google confirmed the revocation.")
        google_error = serializers.CharField(allow_null=True)

    @extend_schema(
        summary="Disconnect Google Calendar",
        description=(
            "Revokes the grant at Google, then deletes the stored credentials. If Google's call fails, the local "
            "credentials are deleted all the same and `google_error` says what happened. From the account page "
            "(session) the browser is redirected back to `/account/` with a message."
        ),
        tags=["calendar"],
        request=None,
        responses={
            200: CalendarRevokeSerializer,
            302: OpenApiResponse(description="Session: back to `/account/`."),
            **_errors(403),
        },
        examples=[
            OpenApiExample(
                "Revoked", response_only=True, value={"deleted": True, "google_revoked": True, "google_error": None}
            ),
            OpenApiExample(
                "Google unreachable",
                response_only=True,
                value={
                    "deleted": True,
                    "google_revoked": False,
                    "google_error": "Google's revoke endpoint could not be reached (ConnectionError).",
                },
            ),
        ],
    )
    def post(self, request):
        outcome = services.google_credential_revoke(user=request.user)
        if not is_session_request(request):
            return Response(self.CalendarRevokeSerializer(outcome).data)
        if not outcome.deleted:
            messages.info(request._request, "Google Calendar was not connected.")
        elif outcome.google_revoked:
            messages.success(request._request, "Google Calendar disconnected.")
        else:
            messages.warning(
                request._request, f"Google Calendar disconnected here; Google did not confirm: {outcome.google_error}"
            )
        return redirect(ACCOUNT_PAGE)


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

    class CalendarEventCreateSerializer(serializers.Serializer):
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
        responses={200: CalendarEventPageSerializer, **_errors(*API_ERRORS)},
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
        data = _validated(self.ListInputSerializer, request.query_params)
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
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                location=OpenApiParameter.HEADER,
                description="Up to 255 printable ASCII characters, unique per event you mean to create.",
            )
        ],
        request=CalendarEventCreateSerializer,
        responses={
            201: CalendarEventSerializer,
            200: OpenApiResponse(CalendarEventSerializer, description="Idempotent replay: the event already existed."),
            **_errors(*API_ERRORS),
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
            _error(
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
        key = request.headers.get("Idempotency-Key", "").strip() or None
        if key is not None and not IDEMPOTENCY_KEY_PATTERN.match(key):
            raise InvalidRequest(
                "Idempotency-Key must be 1-255 printable ASCII characters without spaces.",
                details={"Idempotency-Key": ["Invalid."]},
            )
        data = _validated(self.CalendarEventCreateSerializer, request.data)
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

    class CalendarEventPatchSerializer(serializers.Serializer):
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
        responses={200: CalendarEventSerializer, **_errors(404, *API_ERRORS)},
        examples=[OpenApiExample("Event", response_only=True, value=EVENT_EXAMPLE), NOT_FOUND, *COMMON_ERRORS],
    )
    def get(self, request, event_id: str):
        query = _validated(self.QuerySerializer, request.query_params)
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
        responses={200: CalendarEventSerializer, **_errors(404, *API_ERRORS)},
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
        query = _validated(self.QuerySerializer, request.query_params)
        fields = _validated(self.CalendarEventPatchSerializer, request.data)
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
        responses={204: OpenApiResponse(description="Deleted."), **_errors(404, *API_ERRORS)},
        examples=[NOT_FOUND, *COMMON_ERRORS],
    )
    def delete(self, request, event_id: str):
        query = _validated(self.QuerySerializer, request.query_params)
        services.calendar_event_delete(
            user=request.user,
            event_id=_event_id(event_id),
            calendar_id=query["calendar_id"],
            send_updates=query["send_updates"],
        )
        return Response(status=204)
