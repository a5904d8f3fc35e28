"""The Google OAuth client and endpoints, read from settings. Missing pieces -> 503 `calendar_not_configured`."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from calendars import crypto
from calendars.errors import CalendarNotConfigured

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_REVOKE_URI = "https://oauth2.googleapis.com/revoke"
CALLBACK_PATH = "/api/v1/calendar/oauth2callback"

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events"
EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email"
OPENID_SCOPE = "openid"
# calendar.events: read and write events, nothing else of the calendar. openid + email: which account connected.
SCOPES = [CALENDAR_SCOPE, OPENID_SCOPE, EMAIL_SCOPE]
REQUIRED_SCOPES = [CALENDAR_SCOPE]


@dataclass(frozen=True)
class GoogleConfig:
    client_id: str
    client_secret: str = field(repr=False)
    auth_uri: str
    token_uri: str
    revoke_uri: str
    api_endpoint: str | None
    redirect_uri: str

    @property
    def client_config(self) -> dict:
        """The client secrets format google-auth-oauthlib's `Flow.from_client_config` takes."""
        return {
            "web": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "auth_uri": self.auth_uri,
                "token_uri": self.token_uri,
                "redirect_uris": [self.redirect_uri],
            }
        }


@sensitive_variables()
def _from_secrets_file(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CalendarNotConfigured(
            f"GOOGLE_CLIENT_SECRETS_FILE cannot be read: {exc.strerror}.",
            details={"missing": ["GOOGLE_CLIENT_SECRETS_FILE"]},
        ) from None
    except ValueError:
        raise CalendarNotConfigured(
            "GOOGLE_CLIENT_SECRETS_FILE is not valid JSON.", details={"missing": ["GOOGLE_CLIENT_SECRETS_FILE"]}
        ) from None
    section = data.get("web") or data.get("installed") if isinstance(data, dict) else None
    if not isinstance(section, dict) or not section.get("client_id") or not section.get("client_secret"):
        raise CalendarNotConfigured(
            "GOOGLE_CLIENT_SECRETS_FILE must be the JSON of a 'Web application' OAuth client "
            "(with client_id and client_secret).",
            details={"missing": ["GOOGLE_CLIENT_SECRETS_FILE"]},
        )
    return section


def missing_settings() -> list[str]:
    """What must still be set, in the words of the settings (empty when configured)."""
    missing = []
    if not settings.GOOGLE_CLIENT_SECRETS_FILE and not (settings.GOOGLE_CLIENT_ID and settings.GOOGLE_CLIENT_SECRET):
        missing.append("GOOGLE_CLIENT_SECRETS_FILE or GOOGLE_CLIENT_ID + GOOGLE_CLIENT_SECRET")
    if crypto.keys_problem():
        missing.append("GOOGLE_TOKEN_ENCRYPTION_KEYS")
    return missing


@sensitive_variables()
def google_config_get() -> GoogleConfig:
    missing = missing_settings()
    if missing:
        parts = ["Google Calendar is not configured on this server. Set " + "; ".join(missing) + "."]
        problem = crypto.keys_problem()
        if problem and problem != crypto.NO_KEYS:
            parts.append(problem)
        parts.append("See docs/google-calendar.md.")
        raise CalendarNotConfigured(" ".join(parts), details={"missing": missing})
    section = {}
    if settings.GOOGLE_CLIENT_SECRETS_FILE:
        section = _from_secrets_file(settings.GOOGLE_CLIENT_SECRETS_FILE)
    redirect_uri = settings.GOOGLE_OAUTH_REDIRECT_URI or f"{settings.PUBLIC_URL.rstrip('/')}{CALLBACK_PATH}"
    return GoogleConfig(
        client_id=section.get("client_id") or settings.GOOGLE_CLIENT_ID,
        client_secret=section.get("client_secret") or settings.GOOGLE_CLIENT_SECRET,
        auth_uri=settings.GOOGLE_OAUTH_AUTH_URI or section.get("auth_uri") or GOOGLE_AUTH_URI,
        token_uri=settings.GOOGLE_OAUTH_TOKEN_URI or section.get("token_uri") or GOOGLE_TOKEN_URI,
        revoke_uri=settings.GOOGLE_OAUTH_REVOKE_URI or GOOGLE_REVOKE_URI,
        api_endpoint=settings.GOOGLE_CALENDAR_API_ENDPOINT or None,
        redirect_uri=redirect_uri,
    )


def is_configured() -> bool:
    return not missing_settings()
