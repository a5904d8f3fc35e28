import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware

from common.db_connections import DB_UNAVAILABLE_ERRORS
from common.errors import InternalError
from common.exceptions import database_unavailable, error_for_status, is_api_path, to_app_error
from common.request_id import new_request_id, request_id_var
from common.responses import error_response_for_path

logger = logging.getLogger(__name__)


class RequestIDMiddleware:
    """Accept `X-Request-ID` or make one; expose it to logs and return it on every response, with `X-API-Version`
    (settings.API_VERSION, read once at start-up).

    Written sync+async so the async hot path never hops to a thread for it. The context variable is not reset
    on the way out: Django logs the response (e.g. "Not Found: ...") after the middleware chain returns, and that
    line must carry the id too. Each request sets it afresh.

    Being first in both stacks, it also turns a view's "database unreachable" into a 503 (`process_exception`, which
    Django calls only after a view raised: nothing on the way of a request that succeeds).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        self.api_version = settings.API_VERSION
        if self.is_async:
            markcoroutinefunction(self)

    def _start(self, request):
        request.request_id = new_request_id(request.headers.get("X-Request-ID"))
        request_id_var.set(request.request_id)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        self._start(request)
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        response["X-API-Version"] = self.api_version
        return response

    async def __acall__(self, request):
        self._start(request)
        response = await self.get_response(request)
        response["X-Request-ID"] = request.request_id
        response["X-API-Version"] = self.api_version
        return response

    def process_exception(self, request, exception):
        return dependency_error_response(request, exception)


def dependency_error_response(request, exception) -> HttpResponse | None:
    """A view that raised because the database is unreachable answers 503 `database_unavailable` with `Retry-After`
    (djllm's error shape under /api/, OpenAI's under /v1/, plain text elsewhere) instead of a 500. DRF views are
    answered by the exception handler already; this covers the async views of the fast path and the pages."""
    if not isinstance(exception, DB_UNAVAILABLE_ERRORS):
        return None
    error = database_unavailable(exception)
    if request.path.startswith(("/api/", "/v1/")):
        return error_response_for_path(request.path, error)
    response = HttpResponse(error.message, status=error.status, content_type="text/plain; charset=utf-8")
    for name, value in error.headers.items():
        response[name] = value
    return response


def _is_json(response) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


class APIErrorMiddleware:
    """Every answer on an API path (`/api/`, `/v1/`) is JSON in the documented error shape (OpenAI's on `/v1/`),
    whatever went wrong and whatever DEBUG says.

    - A view's exception is answered here (`process_exception` runs before Django would render its technical 500
      page with the frames' local variables, which hold provider keys): AppError and DRF/Django exceptions by
      their status, anything else as 500 `internal_error`, logged with the request id.
    - The Host header is checked first (ALLOWED_HOSTS -> 400 `disallowed_host`), before any other middleware.
    - An error the lean ASGI handler found before reading the body (token, size) is answered here, so it carries
      the request id, CORS and security headers like any other answer.
    - An HTML error page Django built anyway (an exception in another middleware) is replaced by its JSON twin.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _before(self, request):
        early = getattr(request, "djllm_early_error", None)
        if early is not None:
            return self._error_response(request, early)
        if getattr(request, "djllm_host_checked", False):
            return None  # the lean ASGI handler checked it before reading the body
        try:
            request.get_host()
        except DisallowedHost as exc:
            return self._error_response(request, exc)
        return None

    def _after(self, request, response):
        if response.status_code >= 400 and not response.streaming and not _is_json(response):
            return error_response_for_path(request.path, error_for_status(response.status_code))
        return response

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        if not is_api_path(request.path):
            return self.get_response(request)
        return self._before(request) or self._after(request, self.get_response(request))

    async def __acall__(self, request):
        if not is_api_path(request.path):
            return await self.get_response(request)
        early = self._before(request)
        if early is not None:
            return early
        return self._after(request, await self.get_response(request))

    def _error_response(self, request, exception: Exception):
        if isinstance(exception, DB_UNAVAILABLE_ERRORS):
            return error_response_for_path(request.path, database_unavailable(exception))
        error = to_app_error(exception)
        if error is None:
            logger.error("Unhandled error on %s %s", request.method, request.path, exc_info=exception)
            error = InternalError()
        return error_response_for_path(request.path, error)

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            return None
        return self._error_response(request, exception)


class APISecurityMiddleware(SecurityMiddleware):
    """Django's SecurityMiddleware (HTTPS redirect, HSTS, nosniff, referrer and opener policies) for the lean API
    stack: its hooks do no I/O, so under ASGI they run in place instead of through a worker thread as
    MiddlewareMixin would run them."""

    async def __acall__(self, request):
        response = self.process_request(request)
        if response is None:
            response = await self.get_response(request)
        return self.process_response(request, response)
