"""The one DRF exception handler, and the 404/500 handlers for the API paths."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.response import Response

from common import errors
from common.db_connections import DB_UNAVAILABLE_ERRORS, close_dropped_connections
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
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return errors.InvalidRequest("The request is invalid; see details.", details=details)
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
    return errors.AppError(str(exc.detail), code=code, status=exc.status_code, headers=headers)


def to_app_error(exc: Exception) -> errors.AppError | None:
    if isinstance(exc, errors.AppError):
        return exc
    if isinstance(exc, drf.APIException):
        return _from_drf(exc)
    if isinstance(exc, Http404):
        return errors.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return errors.PermissionDenied()
    if isinstance(exc, DB_UNAVAILABLE_ERRORS):
        return errors.DatabaseUnavailable()
    return None


def database_unavailable(exc: Exception) -> errors.DatabaseUnavailable:
    """The database could not be reached or dropped the connection: log it, close this thread's connections so the
    next request reconnects (whatever thread this is), answer 503."""
    logger.error("Database unavailable: %s: %s", type(exc).__name__, str(exc).strip()[:300])
    close_dropped_connections(force=True)
    return errors.DatabaseUnavailable()


def api_exception_handler(exc, context):
    error = database_unavailable(exc) if isinstance(exc, DB_UNAVAILABLE_ERRORS) else to_app_error(exc)
    if error is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        error = errors.AppError("An internal error occurred.", code="internal_error", status=500)
    response = Response(api_error_body(error), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def _is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path.startswith("/v1/")


def handler404(request, exception=None):
    if _is_api_path(request.path):
        return error_response_for_path(request.path, errors.NotFound(f"No endpoint at {request.path}."))
    return defaults.page_not_found(request, exception)


def handler500(request):
    if _is_api_path(request.path):
        error = errors.AppError("An internal error occurred.", code="internal_error", status=500)
        return error_response_for_path(request.path, error)
    return defaults.server_error(request)


def api_not_found(request, *args, **kwargs):
    return error_response_for_path(request.path, errors.NotFound(f"No endpoint at {request.path}."))
