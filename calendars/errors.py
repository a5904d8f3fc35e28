"""Calendar errors: subclasses of the one hierarchy in `common.errors`, rendered by the one handler."""

from common import errors


class CalendarNotConfigured(errors.ServiceUnavailable):
    status, code = 503, "calendar_not_configured"
    message = "Google Calendar is not configured on this server."


class CalendarNotConnected(errors.Conflict):
    status, code = 409, "calendar_not_connected"
    message = "Connect your Google Calendar first: open `details.authorization_url` in a browser."


class CalendarReconnectRequired(errors.Conflict):
    status, code = 409, "calendar_reconnect_required"
    message = "Google no longer accepts the stored authorization. Reconnect: open `details.authorization_url`."


class CalendarCredentialsUnreadable(errors.ServiceUnavailable):
    status, code = 503, "calendar_credentials_unreadable"
    message = (
        "The stored Google Calendar authorization cannot be decrypted with this server's GOOGLE_TOKEN_ENCRYPTION_KEYS "
        "(a key was changed or dropped); nothing was deleted. An administrator can restore the key, or connect again: "
        "open `details.authorization_url`."
    )


class CalendarForbidden(errors.PermissionDenied):
    status, code = 403, "calendar_forbidden"
    message = "Google Calendar refused the request."


class CalendarNotFound(errors.NotFound):
    status, code = 404, "calendar_not_found"
    message = "Google Calendar has no such calendar or event."


class CalendarConflict(errors.Conflict):
    status, code = 409, "calendar_conflict"
    message = "Google Calendar reported a conflict."


class IdempotencyKeyReused(errors.Conflict):
    status, code = 409, "idempotency_key_reused"
    message = "This Idempotency-Key was already used for a different event."


class CalendarRateLimited(errors.RateLimited):
    status, code = 429, "calendar_rate_limited"
    message = "Google Calendar's rate limit was reached; retry after the time in `Retry-After`."


class CalendarUpstreamError(errors.UpstreamError):
    status, code = 502, "calendar_upstream_error"
    message = "Google Calendar failed to answer."


class CalendarInvalidRequest(errors.InvalidRequest):
    status, code = 400, "calendar_invalid_request"
    message = "Google Calendar rejected the request."


class CalendarExtractionInvalid(errors.AppError):
    """The structured output extracted from text does not describe a valid event."""

    status, code = 422, "calendar_extraction_invalid"
    message = "The events extracted from the text are not valid; see details."


class OAuthFlowError(errors.InvalidRequest):
    """The consent flow cannot complete (denied, bad state, scope not granted). Shown to a person."""

    status, code = 400, "calendar_oauth_failed"
    message = "Connecting Google Calendar failed."
