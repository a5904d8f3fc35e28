"""The one DRF exception handler, the API-path error views (400/403/404/500, CSRF failure), and the mapping from
any exception to an `AppError` that every API path answers with (see `common.middleware.APIErrorMiddleware`)."""

import logging

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf
from rest_framework.response import Response

from common import errors, validation
from common.db_connections import DB_UNAVAILABLE_ERRORS, close_dropped_connections
from common.parsers import request_too_large
from common.responses import api_error_body, error_response_for_path

logger = logging.getLogger(__name__)

# DRF's own exceptions, mapped to our codes. Codes the auth layer sets itself (token_*) pass through.
_DRF_CODES = {
    drf.NotAuthenticated: "token_missing",
    drf.AuthenticationFailed: "token_invalid",
    drf.PermissionDenied: "permission_denied",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.ParseError: "invalid_json",
    drf.Throttled: "rate_limited",
    drf.ValidationError: "invalid_request",
}


def _from_drf(exc: drf.APIException) -> errors.AppError:
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, drf.ValidationError):
        return validation.from_drf(exc.detail)
    if isinstance(exc, (drf.AuthenticationFailed, drf.PermissionDenied)):
        detail_code = getattr(exc.detail, "code", None)
        if detail_code and detail_code not in ("authentication_failed", "permission_denied"):
            code = detail_code
    if isinstance(exc, drf.NotAuthenticated):
        # DRF's "credentials were not provided" does not say how; ours names both headers.
        return errors.NotAuthenticated(headers={"WWW-Authenticate": 'Bearer realm="api"'})
    headers = {}
    if isinstance(exc, drf.Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(int(exc.wait) + 1)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    if isinstance(exc, drf.MethodNotAllowed):
        return errors.MethodNotAllowed(str(exc.detail), headers=headers)
    return errors.AppError(str(exc.detail), code=code, status=exc.status_code, headers=headers)


def _from_django(exc: Exception) -> errors.AppError | None:
    if isinstance(exc, DjangoValidationError):  # e.g. a model's full_clean in a service
        return validation.from_django(exc)
    if isinstance(exc, Http404):
        return errors.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return errors.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        return request_too_large("DATA_UPLOAD_MAX_MEMORY_SIZE")
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        setting = (
            "DATA_UPLOAD_MAX_NUMBER_FIELDS" if isinstance(exc, TooManyFieldsSent) else "DATA_UPLOAD_MAX_NUMBER_FILES"
        )
        limit = getattr(settings, setting)
        return errors.RequestTooLarge(
            f"The form has too many parts; the limit is {setting}={limit}.",
            code="too_many_fields",
            details={"limit": limit, "setting": setting},
        )
    if isinstance(exc, DisallowedHost):
        return errors.InvalidRequest("The Host header names a host this server does not serve.", code="disallowed_host")
    if isinstance(exc, SuspiciousOperation | BadRequest):
        return errors.InvalidRequest("The request is malformed.", code="bad_request")
    if isinstance(exc, RecursionError):
        # Input nested deeper than Python can walk (JSON arrays in arrays...) is the sender's doing, not ours.
        return errors.InvalidRequest("The request is nested too deeply.", code="too_deep")
    return None


def to_app_error(exc: Exception) -> errors.AppError | None:
    if isinstance(exc, errors.AppError):
        return exc
    if isinstance(exc, drf.APIException):
        return _from_drf(exc)
    if isinstance(exc, DB_UNAVAILABLE_ERRORS):
        return errors.DatabaseUnavailable()
    return _from_django(exc)


def database_unavailable(exc: Exception) -> errors.DatabaseUnavailable:
    """The database could not be reached or dropped the connection: log it, close this thread's connections so the
    next request reconnects (whatever thread this is), answer 503."""
    logger.error("Database unavailable: %s: %s", type(exc).__name__, str(exc).strip()[:300])
    close_dropped_connections(force=True)
    return errors.DatabaseUnavailable()


def api_exception_handler(exc, context):
    error = database_unavailable(exc) if isinstance(exc, DB_UNAVAILABLE_ERRORS) else to_app_error(exc)
    if error is None:
        logger.error("Unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        error = errors.InternalError()
    response = Response(api_error_body(error), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path.startswith("/v1/")


def error_for_status(status: int) -> errors.AppError:
    """For answers Django built without an exception we can see (its HTML 4xx/5xx pages on API paths)."""
    known = {
        400: errors.InvalidRequest("The request is malformed.", code="bad_request"),
        401: errors.NotAuthenticated(),
        403: errors.PermissionDenied(),
        404: errors.NotFound(),
        405: errors.MethodNotAllowed(),
        413: errors.RequestTooLarge(),
        415: errors.UnsupportedMediaType(),
        429: errors.RateLimited(),
    }
    if status in known:
        return known[status]
    if status >= 500:
        return errors.InternalError(status=status) if status != 503 else errors.ServiceUnavailable()
    return errors.AppError(code="error", status=status)


def handler400(request, exception=None):
    if is_api_path(request.path):
        return error_response_for_path(request.path, to_app_error(exception) or error_for_status(400))
    return defaults.bad_request(request, exception)


def handler403(request, exception=None):
    if is_api_path(request.path):
        return error_response_for_path(request.path, errors.PermissionDenied())
    return defaults.permission_denied(request, exception)


def handler404(request, exception=None):
    if is_api_path(request.path):
        return error_response_for_path(request.path, errors.NotFound(f"No endpoint at {request.path}."))
    return defaults.page_not_found(request, exception)


def handler500(request):
    if is_api_path(request.path):
        return error_response_for_path(request.path, errors.InternalError())
    return defaults.server_error(request)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: session endpoints under the API answer JSON; pages keep Django's page."""
    if is_api_path(request.path):
        error = errors.PermissionDenied(
            "CSRF check failed: send the CSRF token with session requests, or authenticate with an API token.",
            code="csrf_failed",
        )
        return error_response_for_path(request.path, error)
    return csrf.csrf_failure(request, reason=reason)


@csrf_exempt
def api_not_found(request, *args, **kwargs):
    """Anything else under the API: a JSON 404 for every method (a POST must not meet the CSRF check first)."""
    return error_response_for_path(request.path, errors.NotFound(f"No endpoint at {request.path}."))
