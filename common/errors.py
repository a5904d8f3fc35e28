"""The one exception hierarchy of djllm. Services raise these; the API layer renders them.

`/api/` renders `{"error": {"code", "message", "details", "request_id"}}`; the OpenAI-compatible `/v1/`
endpoints render the same error in OpenAI's shape (see `common.responses`).
"""

from typing import Any


class AppError(Exception):
    status: int = 400
    code: str = "bad_request"
    message: str = "The request could not be processed."
    # OpenAI's `error.type` for the same failure, so SDKs raise their usual exception.
    openai_type: str = "invalid_request_error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details or {}
        self.headers = headers or {}
        self.param = param
        super().__init__(self.message)


class InvalidRequest(AppError):
    status, code = 400, "invalid_request"


class NotAuthenticated(AppError):
    status, code, openai_type = 401, "token_missing", "authentication_error"
    message = (
        "Authentication required: send `Authorization: Bearer <token>`, `X-API-Token: <token>` or `x-api-key: <token>`."
    )


class InsufficientScope(AppError):
    status, code, openai_type = 403, "insufficient_scope", "permission_error"
    message = "This token does not have the scope this endpoint needs."


class PermissionDenied(AppError):
    status, code, openai_type = 403, "permission_denied", "permission_error"
    message = "You do not have permission to do this."


class NotFound(AppError):
    status, code, openai_type = 404, "not_found", "not_found_error"
    message = "Not found."


class MethodNotAllowed(AppError):
    status, code = 405, "method_not_allowed"
    message = "This method is not allowed here."


class Conflict(AppError):
    status, code = 409, "conflict"


class RequestTooLarge(AppError):
    """413. `details.limit` is the limit in bytes, `details.setting` the setting that sets it."""

    status, code = 413, "request_too_large"
    message = "The request body is too large."


class UnsupportedMediaType(AppError):
    status, code = 415, "unsupported_media_type"
    message = "Send JSON with `Content-Type: application/json`."


class BudgetExceeded(AppError):
    status, code, openai_type = 402, "budget_exceeded", "insufficient_quota"
    message = "The monthly budget is used up."


class ModelNotPriced(AppError):
    """A budget applies, and the model has no price: the request's cost could not be bounded or charged."""

    status, code = 400, "model_not_priced"
    message = "This model has no price, and a budget applies."


class RateLimited(AppError):
    status, code, openai_type = 429, "rate_limited", "rate_limit_error"
    message = "Too many requests."


class ServiceUnavailable(AppError):
    status, code, openai_type = 503, "service_unavailable", "api_error"
    message = "The service is not available."


class _DependencyUnavailable(ServiceUnavailable):
    """A store djllm depends on is unreachable: 503 with `Retry-After`, so clients and load balancers back off."""

    retry_after_seconds = 5

    def __init__(self, message: str | None = None, **kwargs) -> None:
        kwargs["headers"] = {"Retry-After": str(self.retry_after_seconds), **(kwargs.get("headers") or {})}
        super().__init__(message, **kwargs)


class RateLimiterUnavailable(_DependencyUnavailable):
    """The cache the rate limits count in is unreachable and RATE_LIMIT_FAIL_OPEN is off."""

    code = "rate_limiter_unavailable"
    message = "The rate limiter is not available (its cache cannot be reached). Try again shortly."


class DatabaseUnavailable(_DependencyUnavailable):
    code = "database_unavailable"
    message = "The database is not available. Try again shortly."


class InternalError(AppError):
    """An unexpected failure: the answer names no detail (the log has it, under the request id)."""

    status, code, openai_type = 500, "internal_error", "api_error"
    message = "An internal error occurred."


class UpstreamError(AppError):
    status, code, openai_type = 502, "upstream_error", "api_error"
    message = "The upstream provider failed."


# Codes recorded without an exception class of their own.
_OTHER_ERROR_DESCRIPTIONS = {
    "client_disconnected": "The client closed the connection before the response was complete.",
    "upstream_timeout": "The provider did not answer in time, or stopped answering mid-response.",
    "upstream_rate_limited": "The provider refused the request: its rate limit was reached.",
    "upstream_overloaded": "The provider was overloaded.",
    "upstream_auth_failed": "The provider refused the route's API key.",
    "upstream_bad_request": "The provider rejected the request as invalid.",
    "upstream_interrupted": "The provider's response was cut off.",
}


def error_description(code: str) -> str:
    """What an error code means, from the default message of the AppError class that has it ("" if none does).
    Usage records store the code only, so this is what pages show next to it."""
    if code in _OTHER_ERROR_DESCRIPTIONS:
        return _OTHER_ERROR_DESCRIPTIONS[code]
    classes = [AppError]
    while classes:
        cls = classes.pop()
        if cls.code == code and cls is not AppError:
            return cls.message
        classes.extend(cls.__subclasses__())
    return ""
