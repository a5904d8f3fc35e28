"""The user's Google connection: the OAuth consent flow, the stored credentials (refreshed before use, every
refresh persisted), reconnect handling, revocation, and re-encryption under a new key."""

import logging
from dataclasses import dataclass, field
from datetime import UTC, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from google.oauth2.credentials import Credentials

from calendars import google_client, oauth
from calendars.config import REQUIRED_SCOPES, GoogleConfig, google_config_get
from calendars.crypto import CredentialDecryptError, encrypt
from calendars.errors import (
    CalendarCredentialsUnreadable,
    CalendarNotConnected,
    CalendarReconnectRequired,
    OAuthFlowError,
)
from calendars.google_client import GoogleAuthRejected
from calendars.models import GoogleCredential, OAuthState
from common.audit import Actor, audit_event_record
from common.errors import RateLimited

logger = logging.getLogger(__name__)

STATE_LIFETIME = timedelta(minutes=10)
STATE_KEEP_AFTER_EXPIRY = timedelta(days=1)  # so a late callback hears "expired", not "unknown"


# --- OAuth flow --------------------------------------------------------------------------------------------


def oauth_authorization_start(*, user, config: GoogleConfig | None = None) -> str:
    """A fresh authorization URL for `user`: its state is stored (hashed) with the PKCE verifier."""
    config = config or google_config_get()
    now = timezone.now()
    OAuthState.objects.filter(expires_at__lt=now - STATE_KEEP_AFTER_EXPIRY).delete()
    with transaction.atomic():
        # One start at a time per user (the user row is locked), so parallel starts cannot pass the cap together.
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
        _oauth_pending_states_check(user=user, now=now)
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


def _oauth_pending_states_check(*, user, now) -> None:
    """At most GOOGLE_OAUTH_MAX_PENDING_STATES unused, unexpired consent links per user: each is a stored row, and
    starting the flow in a loop must not fill the table."""
    limit = settings.GOOGLE_OAUTH_MAX_PENDING_STATES
    pending = OAuthState.objects.filter(user=user, used_at__isnull=True, expires_at__gt=now)
    expiries = list(pending.order_by("expires_at").values_list("expires_at", flat=True)[:limit])
    if len(expiries) < limit:
        return
    retry = max(int((expiries[0] - now).total_seconds()) + 1, 1)
    raise RateLimited(
        f"You have {limit} unused Google sign-in links already; use one, or start again in {retry} s.",
        details={"limit": limit, "pending": len(expiries)},
        headers={"Retry-After": str(retry)},
    )


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


def oauth_callback_complete(
    *, user, state: str, code: str = "", error: str = "", by: Actor | None = None
) -> GoogleCredential:
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
        # Google sends a refresh token only on consent; keep the stored one otherwise (as stored: it is not
        # decrypted here, so a key problem never turns into a lost token).
        if grant.refresh_token:
            credential.refresh_token = grant.refresh_token
        credential.access_token = grant.access_token
        credential.expiry = grant.expiry
        credential.scopes = grant.scopes
        credential.email = grant.email or credential.email
        credential.status = GoogleCredential.Status.CONNECTED
        credential.connected_at = timezone.now()
        credential.last_error = ""
        reconnected = credential.pk is not None
        credential.save()
        audit_event_record(
            by=by,
            action="calendar.connected",
            target=credential,
            target_label=credential.email or str(user),
            details={"email": credential.email, "scopes": list(grant.scopes), "reconnected": reconnected},
        )
    logger.info("Google Calendar connected for user %s", user.pk)
    return credential


@dataclass(frozen=True)
class RevokeOutcome:
    deleted: bool
    google_revoked: bool
    google_error: str | None


def google_credential_revoke(*, user, by: Actor | None = None) -> RevokeOutcome:
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
    with transaction.atomic():
        credential_id = credential.pk
        credential.delete()
        audit_event_record(
            by=by,
            action="calendar.revoked",
            target_type=GoogleCredential._meta.label_lower,
            target_id=credential_id,
            target_label=credential.email or str(user),
            details={"email": credential.email, "google_revoked": revoked, "google_error": google_error},
        )
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
    _stored: tuple = field(default=(), repr=False)  # holds the tokens

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
        # A key problem on this server, not a dead grant: the row is left exactly as it is (the right key, put back
        # in GOOGLE_TOKEN_ENCRYPTION_KEYS, opens it again). Connecting again replaces it, if the user chooses to.
        logger.error("Stored Google tokens of user %s cannot be decrypted with GOOGLE_TOKEN_ENCRYPTION_KEYS", user.pk)
        raise CalendarCredentialsUnreadable(
            details={"authorization_url": oauth_authorization_start(user=user, config=config)}
        ) from None
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


def encryption_keys_rotation(on_row=None):
    """`encryption_keys_rotate` as one part of `manage.py rotate_encryption_keys` (common/key_rotation.py)."""
    from calendars import crypto
    from common.key_rotation import RotationReport

    report = RotationReport(name="GOOGLE_TOKEN_ENCRYPTION_KEYS")
    problem = crypto.keys_problem()
    if problem == crypto.NO_KEYS and not encryption_rows_count():
        report.note = "not set, and no Google tokens are stored: nothing to do."
    elif problem:
        report.problem = problem
    else:
        done = encryption_keys_rotate(on_row=on_row)
        report.rotated, report.failed = done.rotated, done.failed_ids
    return report
