"""Writes and Google calls for the calendar: the OAuth flow, stored credentials (refreshed and persisted), the
events API, and the natural-language seam (`calendar_events_from_extraction`)."""

import logging
from dataclasses import dataclass, field
from datetime import UTC, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from google.oauth2.credentials import Credentials

from calendars import google_client, mapping, oauth
from calendars.config import REQUIRED_SCOPES, GoogleConfig, google_config_get
from calendars.crypto import CredentialDecryptError, encrypt
from calendars.errors import (
    CalendarConflict,
    CalendarExtractionInvalid,
    CalendarNotConnected,
    CalendarReconnectRequired,
    IdempotencyKeyReused,
    OAuthFlowError,
)
from calendars.google_client import GoogleAuthRejected
from calendars.mapping import EventInput
from calendars.models import GoogleCredential, OAuthState
from calendars.schemas import EventExtraction, event_extraction_parse
from common.errors import InvalidRequest

logger = logging.getLogger(__name__)

STATE_LIFETIME = timedelta(minutes=10)
STATE_KEEP_AFTER_EXPIRY = timedelta(days=1)  # so a late callback hears "expired", not "unknown"


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


# --- OAuth flow --------------------------------------------------------------------------------------------


def oauth_authorization_start(*, user, config: GoogleConfig | None = None) -> str:
    """A fresh authorization URL for `user`: its state is stored (hashed) with the PKCE verifier."""
    config = config or google_config_get()
    now = timezone.now()
    OAuthState.objects.filter(expires_at__lt=now - STATE_KEEP_AFTER_EXPIRY).delete()
    existing = GoogleCredential.objects.filter(user=user).first()
    state = oauth.state_new()
    url, verifier = oauth.authorization_url_build(
        config,
        state=state,
        redirect_uri=config.redirect_uri,
        prompt_consent=existing is None or not existing.has_refresh_token,
        login_hint=existing.email if existing else "",
    )
    OAuthState.objects.create(
        state_digest=oauth.state_digest(state),
        user=user,
        code_verifier_encrypted=encrypt(verifier or ""),
        redirect_uri=config.redirect_uri,
        created_at=now,
        expires_at=now + STATE_LIFETIME,
    )
    return url


def _oauth_state_consume(*, user, state: str) -> OAuthState:
    row = OAuthState.objects.filter(state_digest=oauth.state_digest(state or "")).first() if state else None
    if row is None:
        raise OAuthFlowError(
            "This sign-in link is unknown. Start again with “Connect Google Calendar”.",
            code="calendar_oauth_state_invalid",
        )
    if row.user_id != user.pk:
        raise OAuthFlowError(
            "This sign-in link was started by another djllm user. Start again from your account.",
            code="calendar_oauth_state_invalid",
        )
    if row.used_at is not None:
        raise OAuthFlowError(
            "This sign-in link was already used. Start again with “Connect Google Calendar”.",
            code="calendar_oauth_state_invalid",
        )
    now = timezone.now()
    if row.expires_at <= now:
        raise OAuthFlowError(
            "This sign-in link expired (10 minutes). Start again with “Connect Google Calendar”.",
            code="calendar_oauth_state_invalid",
        )
    # Single use, also under concurrent callbacks: only one UPDATE can flip used_at.
    if OAuthState.objects.filter(pk=row.pk, used_at__isnull=True).update(used_at=now) != 1:
        raise OAuthFlowError(
            "This sign-in link was already used. Start again with “Connect Google Calendar”.",
            code="calendar_oauth_state_invalid",
        )
    return row


def oauth_callback_complete(*, user, state: str, code: str = "", error: str = "") -> GoogleCredential:
    """Validate the state, exchange the code, check the granted scopes, and store the credentials."""
    config = google_config_get()
    row = _oauth_state_consume(user=user, state=state)
    if error:
        reason = "You declined access" if error == "access_denied" else f"Google reported “{error}”"
        raise OAuthFlowError(f"{reason}; Google Calendar was not connected.", code="calendar_oauth_denied")
    if not code:
        raise OAuthFlowError("Google sent no authorization code; Google Calendar was not connected.")
    try:
        verifier = row.code_verifier
    except CredentialDecryptError:
        raise OAuthFlowError("This sign-in link can no longer be read. Start again.") from None
    grant = oauth.code_exchange(config, code=code, code_verifier=verifier, redirect_uri=row.redirect_uri)
    missing = [scope for scope in REQUIRED_SCOPES if scope not in grant.scopes]
    if missing:
        raise OAuthFlowError(
            "Google Calendar was not connected: access to your calendar events was not granted. Connect again "
            "and leave “See, edit, share, and permanently delete all the calendars events” ticked.",
            code="calendar_scope_not_granted",
            details={"missing_scopes": missing, "granted_scopes": grant.scopes},
        )
    with transaction.atomic():
        credential = GoogleCredential.objects.select_for_update().filter(user=user).first()
        if credential is None:
            credential = GoogleCredential(user=user)
        # Google sends a refresh token only on consent; keep the stored one otherwise.
        refresh_token = grant.refresh_token or (credential.refresh_token if credential.has_refresh_token else "")
        credential.refresh_token = refresh_token
        credential.access_token = grant.access_token
        credential.expiry = grant.expiry
        credential.scopes = grant.scopes
        credential.email = grant.email or credential.email
        credential.status = GoogleCredential.Status.CONNECTED
        credential.connected_at = timezone.now()
        credential.last_error = ""
        credential.save()
    logger.info("Google Calendar connected for user %s", user.pk)
    return credential


@dataclass(frozen=True)
class RevokeOutcome:
    deleted: bool
    google_revoked: bool
    google_error: str | None


def google_credential_revoke(*, user) -> RevokeOutcome:
    """Revoke at Google, then delete the stored credentials, even if Google's call failed."""
    credential = GoogleCredential.objects.filter(user=user).first()
    if credential is None:
        return RevokeOutcome(deleted=False, google_revoked=False, google_error="No Google Calendar connection.")
    google_error: str | None = "No token was stored to revoke at Google."
    revoked = False
    try:
        token = credential.refresh_token or credential.access_token
    except CredentialDecryptError:
        token = ""
        google_error = "The stored token cannot be decrypted, so it was not revoked at Google."
    if token:
        try:
            config = google_config_get()
        except Exception as exc:  # still delete locally
            google_error = str(getattr(exc, "message", exc))
        else:
            google_error = oauth.token_revoke(config, token=token)
            revoked = google_error is None
    credential.delete()
    if google_error and token:
        logger.warning("Revoking at Google failed for user %s: %s", user.pk, google_error)
    return RevokeOutcome(deleted=True, google_revoked=revoked, google_error=google_error)


def google_credential_mark_reconnect(*, credential: GoogleCredential, reason: str) -> None:
    """Google refused the grant: keep the row (email, status) but drop the dead tokens."""
    GoogleCredential.objects.filter(pk=credential.pk).update(
        status=GoogleCredential.Status.NEEDS_RECONNECT,
        refresh_token_encrypted="",
        access_token_encrypted="",
        expiry=None,
        last_error=reason[:300],
        updated_at=timezone.now(),
    )
    logger.warning("Google Calendar needs reconnect for user %s: %s", credential.user_id, reason)


def _reconnect_error(*, user, config: GoogleConfig) -> CalendarReconnectRequired:
    url = oauth_authorization_start(user=user, config=config)
    return CalendarReconnectRequired(details={"authorization_url": url})


# --- A usable connection ------------------------------------------------------------------------------------


@dataclass
class CalendarConnection:
    """A user's credentials, valid for use, and the Calendar client. `call` persists any refresh the client does."""

    user: object
    config: GoogleConfig
    credential: GoogleCredential
    credentials: Credentials
    service: object
    _stored: tuple = field(default=())

    def _snapshot(self) -> tuple:
        c = self.credentials
        return (c.token, c.refresh_token, c.expiry, tuple(c.granted_scopes or ()))

    def persist_if_refreshed(self) -> None:
        if self._snapshot() == self._stored:
            return
        c = self.credentials
        expiry = c.expiry.replace(tzinfo=UTC) if c.expiry else None
        fields = {
            "access_token_encrypted": encrypt(c.token or ""),
            "expiry": expiry,
            "refreshed_at": timezone.now(),
            "updated_at": timezone.now(),
        }
        if c.refresh_token and c.refresh_token != self._stored[1]:
            fields["refresh_token_encrypted"] = encrypt(c.refresh_token)
        if c.granted_scopes:
            fields["scopes"] = sorted(set(c.granted_scopes))
        GoogleCredential.objects.filter(pk=self.credential.pk).update(**fields)
        self._stored = self._snapshot()

    def call(self, make_request):
        """`make_request(service)` -> an HttpRequest; executed with djllm's error mapping."""
        try:
            return google_client.execute(lambda: make_request(self.service))
        except GoogleAuthRejected as exc:
            google_credential_mark_reconnect(credential=self.credential, reason=f"Google refused: {exc}")
            raise _reconnect_error(user=self.user, config=self.config) from None
        finally:
            self.persist_if_refreshed()


def calendar_connection_open(*, user) -> CalendarConnection:
    """The user's credentials, refreshed first when expired (and the refresh stored). 409 when the user must
    connect or reconnect, with a fresh authorization URL."""
    config = google_config_get()
    credential = GoogleCredential.objects.filter(user=user).first()
    if credential is None:
        raise CalendarNotConnected(details={"authorization_url": oauth_authorization_start(user=user, config=config)})
    if credential.needs_reconnect:
        raise _reconnect_error(user=user, config=config)
    try:
        access_token, refresh_token = credential.access_token, credential.refresh_token
    except CredentialDecryptError:
        google_credential_mark_reconnect(credential=credential, reason="stored token not decryptable with the keys")
        raise _reconnect_error(user=user, config=config) from None
    credentials = google_client.credentials_build(
        config,
        access_token=access_token,
        refresh_token=refresh_token,
        expiry=credential.expiry_naive_utc,
        scopes=list(credential.scopes),
    )
    connection = CalendarConnection(user, config, credential, credentials, service=None)
    connection._stored = connection._snapshot()
    if not credentials.valid:  # expired (or no access token): refresh before use, and store the result
        try:
            google_client.credentials_refresh(credentials)
        except GoogleAuthRejected as exc:
            google_credential_mark_reconnect(credential=credential, reason=f"refresh refused: {exc}")
            raise _reconnect_error(user=user, config=config) from None
        connection.persist_if_refreshed()
    connection.service = google_client.service_build(config, credentials)
    return connection


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
        raise InvalidRequest("The time range is invalid; see details.", details=problems)
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


# --- Key rotation -------------------------------------------------------------------------------------------


@dataclass
class RotationReport:
    rotated: int = 0
    failed: int = 0
    failed_ids: list[str] = field(default_factory=list)


def encryption_keys_rotate(*, on_row=None) -> RotationReport:
    """Re-encrypt every stored token (and pending PKCE verifier) under the first key (`MultiFernet.rotate`).

    Each row is swapped only if its ciphertext is still the one read (a concurrent refresh wrote a newer value
    under the first key already). Rows no key can decrypt are left alone and reported. Safe to run again.
    """
    from calendars.crypto import rotate

    report = RotationReport()
    OAuthState.objects.filter(expires_at__lt=timezone.now() - STATE_KEEP_AFTER_EXPIRY).delete()
    jobs = [
        (GoogleCredential, ["refresh_token_encrypted", "access_token_encrypted"]),
        (OAuthState, ["code_verifier_encrypted"]),
    ]
    for model, columns in jobs:
        for row in model.objects.values("pk", *columns).order_by("pk").iterator(chunk_size=500):
            try:
                new_values = {column: rotate(row[column]) for column in columns}
            except CredentialDecryptError:
                report.failed += 1
                report.failed_ids.append(f"{model._meta.model_name}:{row['pk']}")
            else:
                model.objects.filter(**row).update(**new_values)
                report.rotated += 1
            if on_row is not None:
                on_row()
    return report


def encryption_rows_count() -> int:
    return GoogleCredential.objects.count() + OAuthState.objects.count()
