from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from common.request_id import new_request_id, request_id_var


class RequestIDMiddleware:
    """Accept `X-Request-ID` or make one; expose it to logs and return it on every response.

    Written sync+async so the async hot path never hops to a thread for it. The context variable is not reset
    on the way out: Django logs the response (e.g. "Not Found: ...") after the middleware chain returns, and that
    line must carry the id too. Each request sets it afresh.
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
