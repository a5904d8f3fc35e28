"""The Calendar API through google-api-python-client, and the mapping of Google's errors onto djllm's.

| Google says                                            | djllm answers                                  |
|--------------------------------------------------------|------------------------------------------------|
| 401, or a refresh answered `invalid_grant`             | 409 calendar_reconnect_required (`GoogleAuthRejected`) |
| 403 (forbidden, insufficient scope, ...)               | 403 calendar_forbidden                         |
| 404 / 410                                              | 404 calendar_not_found                         |
| 409                                                    | 409 calendar_conflict                          |
| 429, 403 rateLimitExceeded / userRateLimitExceeded     | bounded retries, then 429 with Retry-After     |
| 5xx, unreachable, timeout                              | 502 calendar_upstream_error                    |
| 400                                                    | 400 calendar_invalid_request                   |
"""

import json
import logging
import math
import time
from collections.abc import Callable

import google.auth.transport.requests
import google_auth_httplib2
import httplib2
from django.conf import settings
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from calendars.config import GoogleConfig
from calendars.errors import (
    CalendarConflict,
    CalendarForbidden,
    CalendarInvalidRequest,
    CalendarNotFound,
    CalendarRateLimited,
    CalendarUpstreamError,
)

logger = logging.getLogger(__name__)

RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}


class GoogleAuthRejected(Exception):
    """Google no longer accepts the credentials: the connection must be renewed by the user."""


class _TimeoutRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport with djllm's timeout (its own default is two minutes)."""

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        timeout = timeout or settings.GOOGLE_API_TIMEOUT
        return super().__call__(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)


def credentials_build(
    config: GoogleConfig, *, access_token: str, refresh_token: str, expiry, scopes: list[str]
) -> Credentials:
    return Credentials(
        token=access_token or None,
        refresh_token=refresh_token or None,
        token_uri=config.token_uri,
        client_id=config.client_id,
        client_secret=config.client_secret,
        scopes=scopes or None,
        expiry=expiry,
    )


def _is_invalid_grant(exc: RefreshError) -> bool:
    data = exc.args[1] if len(exc.args) > 1 else None
    if isinstance(data, dict):
        return data.get("error") == "invalid_grant"
    return "invalid_grant" in str(exc.args[0] if exc.args else "")


def credentials_refresh(credentials: Credentials) -> None:
    """Refresh in place. `GoogleAuthRejected` when Google says the grant is gone; 502 when Google is unreachable."""
    if not credentials.refresh_token:
        raise GoogleAuthRejected("No refresh token is stored.")
    try:
        credentials.refresh(_TimeoutRequest())
    except RefreshError as exc:
        if _is_invalid_grant(exc):
            raise GoogleAuthRejected("invalid_grant") from None
        logger.warning("Refreshing the Google token failed: %s", exc.args[0] if exc.args else exc)
        raise CalendarUpstreamError("Google did not refresh the access token. Try again later.") from None
    except TransportError:
        raise CalendarUpstreamError("Google's token endpoint could not be reached. Try again later.") from None


def service_build(config: GoogleConfig, credentials: Credentials):
    """The Calendar v3 client, from the discovery document bundled with the library (no network fetch)."""
    # On a 401 the client refreshes once and retries once; a second 401 means the grant is gone (no retry loop).
    http = google_auth_httplib2.AuthorizedHttp(
        credentials, http=httplib2.Http(timeout=settings.GOOGLE_API_TIMEOUT), max_refresh_attempts=1
    )
    client_options = {"api_endpoint": config.api_endpoint} if config.api_endpoint else None
    return build(
        "calendar",
        "v3",
        http=http,
        static_discovery=True,
        cache_discovery=False,
        client_options=client_options,
    )


def _error_reason(error: HttpError) -> str:
    try:
        data = json.loads(error.content.decode("utf-8"))
        errors = data["error"].get("errors") or []
        if errors and isinstance(errors[0], dict):
            return str(errors[0].get("reason", ""))
        return str(data["error"].get("status", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def _retry_after(error: HttpError) -> float | None:
    value = error.resp.get("retry-after") if error.resp is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def _is_rate_limited(status: int, reason: str) -> bool:
    return status == 429 or (status == 403 and reason in RATE_LIMIT_REASONS)


def http_error_map(error: HttpError, *, retry_after: float | None = None) -> Exception:
    """One Google HttpError -> the djllm error to raise (or `GoogleAuthRejected` for a 401)."""
    status, reason = error.status_code, _error_reason(error)
    message = error.reason or ""
    details = {"google_status": status, "google_reason": reason, "google_message": message}
    if status == 401:
        return GoogleAuthRejected(message)
    if _is_rate_limited(status, reason):
        wait = max(1, math.ceil(retry_after if retry_after is not None else settings.GOOGLE_API_RETRY_BACKOFF_SECONDS))
        return CalendarRateLimited(details=details, headers={"Retry-After": str(wait)})
    if status == 403:
        scope_hint = " The connection lacks a needed scope: reconnect." if reason == "insufficientPermissions" else ""
        return CalendarForbidden(f"Google Calendar refused the request: {message}.{scope_hint}", details=details)
    if status in (404, 410):
        return CalendarNotFound(f"Google Calendar: {message or 'not found'}.", details=details)
    if status in (409, 412):
        return CalendarConflict(f"Google Calendar: {message or 'conflict'}.", details=details)
    if status == 400:
        return CalendarInvalidRequest(f"Google Calendar rejected the request: {message}.", details=details)
    return CalendarUpstreamError(f"Google Calendar answered {status}.", details=details)


def execute(make_request: Callable[[], object]) -> dict:
    """Run one API request. Rate limits are retried (bounded, exponential backoff honouring Retry-After), then
    mapped; every other failure is mapped at once. No retry loop on auth failures."""
    attempts = max(0, settings.GOOGLE_API_MAX_RETRIES) + 1
    for attempt in range(attempts):
        try:
            return make_request().execute()
        except HttpError as error:
            retry_after = _retry_after(error)
            if _is_rate_limited(error.status_code, _error_reason(error)) and attempt + 1 < attempts:
                backoff = settings.GOOGLE_API_RETRY_BACKOFF_SECONDS * (2**attempt)
                delay = min(retry_after if retry_after is not None else backoff, settings.GOOGLE_API_RETRY_MAX_SECONDS)
                logger.info(
                    "Google Calendar rate limit (attempt %d/%d); retrying in %.1fs", attempt + 1, attempts, delay
                )
                time.sleep(delay)
                continue
            raise http_error_map(error, retry_after=retry_after) from None
        except RefreshError as exc:  # the client refreshed after a 401 and Google refused
            if _is_invalid_grant(exc):
                raise GoogleAuthRejected("invalid_grant") from None
            raise CalendarUpstreamError("Google did not refresh the access token. Try again later.") from None
        except (httplib2.HttpLib2Error, TransportError, OSError) as exc:  # OSError covers timeouts
            logger.warning("Google Calendar unreachable: %s", type(exc).__name__)
            raise CalendarUpstreamError("Google Calendar could not be reached. Try again later.") from None
    raise AssertionError("unreachable")  # pragma: no cover
