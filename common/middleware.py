from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpResponse

from common.db_connections import DB_UNAVAILABLE_ERRORS
from common.request_id import new_request_id, request_id_var


class RequestIDMiddleware:
    """Accept `X-Request-ID` or make one; expose it to logs and return it on every response.

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
        return response

    async def __acall__(self, request):
        self._start(request)
        response = await self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response

    def process_exception(self, request, exception):
        return dependency_error_response(request, exception)


def dependency_error_response(request, exception) -> HttpResponse | None:
    """A view that raised because the database is unreachable answers 503 `database_unavailable` with `Retry-After`
    (djllm's error shape under /api/, OpenAI's under /v1/, plain text elsewhere) instead of a 500. DRF views are
    answered by the exception handler already; this covers the async views of the fast path and the pages."""
    if not isinstance(exception, DB_UNAVAILABLE_ERRORS):
        return None
    from common.exceptions import database_unavailable
    from common.responses import error_response_for_path

    error = database_unavailable(exception)
    if request.path.startswith(("/api/", "/v1/")):
        return error_response_for_path(request.path, error)
    response = HttpResponse(error.message, status=error.status, content_type="text/plain; charset=utf-8")
    for name, value in error.headers.items():
        response[name] = value
    return response
