"""The connection endpoints under /api/v1/calendar/ (auth, oauth2callback, status, revoke) and the base view of
every calendar endpoint. Thin views: parse, call one service, serialize. The events endpoints: `event_apis`."""

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseRedirect, QueryDict
from django.shortcuts import redirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import APITokenAuthentication
from accounts.permissions import HasTokenScope
from calendars import connections, selectors
from calendars.config import google_config_get
from calendars.openapi import NOT_CONFIGURED, error_responses
from calendars.permissions import CalendarTokenOrSession, is_session_request
from common.audit import VIA_ACCOUNT, VIA_API, actor_from_request
from common.errors import AppError
from common.parsers import JSONParser
from common.serializers import query_values

ACCOUNT_PAGE = "account:page"


def validated(serializer_class, data) -> dict:
    if isinstance(data, QueryDict):
        data = query_values(data)
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class CalendarApi(APIView):
    """Token-authenticated, `calendar` scope; 503 `calendar_not_configured` before anything else is done."""

    permission_classes = [HasTokenScope]
    required_scope = "calendar"
    throttle_scope = "calendar"  # API_THROTTLE_RATE_CALENDAR: these calls spend the Google quota all users share

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        google_config_get()


class CalendarAuthApi(APIView):
    authentication_classes = [APITokenAuthentication, SessionAuthentication]
    permission_classes = [CalendarTokenOrSession]
    throttle_scope = "calendar"

    @extend_schema(
        summary="Start connecting Google Calendar",
        description=(
            "Creates a consent request and returns Google's authorization URL. Open it in a browser where you are "
            "logged in to djllm (`/account/login/`) as the same user; after consent Google sends the browser to "
            "`/api/v1/calendar/oauth2callback`, which stores the connection. The link is single-use and expires "
            "after 10 minutes; a user may hold at most GOOGLE_OAUTH_MAX_PENDING_STATES unused links (429 "
            "`rate_limited` with Retry-After beyond that).\n\nWith an API token the answer is JSON. A person logged in with a session (the "
            "account page's *Connect Google Calendar* button) is redirected to Google instead."
        ),
        tags=["calendar"],
        responses={
            200: inline_serializer("CalendarAuthorization", {"authorization_url": serializers.URLField()}),
            302: OpenApiResponse(description="Session (browser): redirect to Google's consent page."),
            **error_responses(403, 429, 503),
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
            return Response({"authorization_url": connections.oauth_authorization_start(user=request.user)})
        try:
            return HttpResponseRedirect(connections.oauth_authorization_start(user=request.user))
        except AppError as error:
            messages.error(request._request, error.message)
            return redirect(ACCOUNT_PAGE)


class CalendarOAuthCallbackApi(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [AllowAny]
    throttle_scope = "calendar"

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
            credential = connections.oauth_callback_complete(
                user=request.user,
                state=request.query_params.get("state", ""),
                code=request.query_params.get("code", ""),
                error=request.query_params.get("error", ""),
                by=actor_from_request(request, via=VIA_ACCOUNT),  # Google sends the browser back here
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
        responses={200: CalendarStatusSerializer, **error_responses(403, 429, 503)},
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
    throttle_scope = "calendar"
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
            **error_responses(403, 429),
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
        via = VIA_ACCOUNT if is_session_request(request) else VIA_API
        outcome = connections.google_credential_revoke(user=request.user, by=actor_from_request(request, via=via))
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
