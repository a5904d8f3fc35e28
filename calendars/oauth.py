"""Google's OAuth 2.0 web flow through google-auth-oauthlib: the authorization URL, the code exchange (with the
PKCE code_verifier stored server-side), and token revocation. No database access here."""

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from google.auth import jwt
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

from calendars.config import SCOPES, GoogleConfig
from calendars.errors import CalendarUpstreamError, OAuthFlowError

logger = logging.getLogger(__name__)


def state_new() -> str:
    return secrets.token_urlsafe(32)


def state_digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _flow(config: GoogleConfig, *, redirect_uri: str, code_verifier: str | None = None) -> Flow:
    return Flow.from_client_config(
        config.client_config,
        scopes=SCOPES,
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
        autogenerate_code_verifier=code_verifier is None,
    )


def authorization_url_build(
    config: GoogleConfig, *, state: str, redirect_uri: str, prompt_consent: bool, login_hint: str = ""
) -> tuple[str, str]:
    """(authorization URL, PKCE code_verifier). The verifier must be kept for the callback."""
    flow = _flow(config, redirect_uri=redirect_uri)
    params = {"access_type": "offline", "include_granted_scopes": "true", "state": state}
    if prompt_consent:
        params["prompt"] = "consent"  # Google sends a refresh token only on consent
    if login_hint:
        params["login_hint"] = login_hint
    url, _ = flow.authorization_url(**params)
    return url, flow.code_verifier


@dataclass(frozen=True)
class TokenGrant:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expiry: datetime | None
    scopes: list[str]
    email: str


def _email_from_id_token(id_token: str | None) -> str:
    # The ID token came straight from Google's token endpoint over TLS, so its signature need not be checked
    # (OpenID Connect Core 3.1.3.7); it is only read for the account's address.
    if not id_token:
        return ""
    try:
        claims = jwt.decode(id_token, verify=False)
    except (ValueError, TypeError):
        return ""
    return str(claims.get("email", ""))


@sensitive_variables()
def code_exchange(config: GoogleConfig, *, code: str, code_verifier: str, redirect_uri: str) -> TokenGrant:
    """Exchange the authorization code, rebuilding the Flow with the verifier stored at the start."""
    flow = _flow(config, redirect_uri=redirect_uri, code_verifier=code_verifier)
    try:
        flow.fetch_token(code=code, timeout=settings.GOOGLE_API_TIMEOUT)
        token = dict(flow.oauth2session.token)
    except Warning as changed:
        # oauthlib raises when the granted scopes differ from the requested ones (a user may untick one, and
        # include_granted_scopes may add earlier grants). The caller compares the scopes itself.
        token = dict(getattr(changed, "token", None) or {})
        if not token.get("access_token"):
            raise OAuthFlowError("Google's token answer could not be read.") from None
    except OAuth2Error as exc:
        logger.warning("Google refused the authorization code: %s", exc.error)
        raise OAuthFlowError(
            f"Google refused the authorization code ({exc.error}). Start the connection again.",
            details={"google_error": exc.error, "google_error_description": exc.description or ""},
        ) from None
    except requests.RequestException as exc:
        logger.warning("Google's token endpoint could not be reached: %s", type(exc).__name__)
        raise CalendarUpstreamError("Google's token endpoint could not be reached. Try again.") from None
    scope = token.get("scope")
    scopes = scope.split() if isinstance(scope, str) else list(scope or SCOPES)
    expires_at = token.get("expires_at")
    return TokenGrant(
        access_token=token["access_token"],
        refresh_token=token.get("refresh_token") or "",
        expiry=datetime.fromtimestamp(float(expires_at), UTC) if expires_at else None,
        scopes=sorted(set(scopes)),
        email=_email_from_id_token(token.get("id_token")),
    )


@sensitive_variables("token")
def token_revoke(config: GoogleConfig, *, token: str) -> str | None:
    """Revoke at Google (a refresh token revokes the whole grant). None on success, else what went wrong."""
    try:
        response = requests.post(
            config.revoke_uri,
            data={"token": token},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=settings.GOOGLE_API_TIMEOUT,
        )
    except requests.RequestException as exc:
        return f"Google's revoke endpoint could not be reached ({type(exc).__name__})."
    if response.status_code == 200:
        return None
    try:
        error = response.json().get("error", "")
    except ValueError:
        error = ""
    return f"Google answered {response.status_code}{f' ({error})' if error else ''}."
