"""The ASGI entry point: the LLM hot path gets its own Django handler with a lean, fully async middleware stack.

Django's built-in middleware (sessions, CSRF, auth, messages, security, WhiteNoise) is sync; under ASGI each one
costs a hop to a worker thread on every request. The token-authenticated API needs none of it — only the request
id and CORS — so requests under `API_FAST_PATHS` go to a second handler built from `API_MIDDLEWARE`, and
everything else (admin, account page, docs, calendar OAuth) to the normal one. Same URLconf, same views.
"""

import asyncio

from django.conf import settings
from django.core import signals
from django.core.asgi import get_asgi_application
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import set_script_prefix

from common import shutdown


class APIHandler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        # Django wraps each request in a ThreadSensitiveContext, which starts (and later joins) a thread of the
        # request's own for its sync calls: measurable on every request of the hot path. Here the few sync calls
        # left (request signals, a token lookup every half second) share the process's one thread-sensitive
        # thread; the database work of the hot path runs on its own long-lived thread (common/db_thread.py).
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        """Django's `ASGIHandler.handle`, except that the request signals run in place rather than in a thread.

        Django sends `request_started` and calls `response.close()` (which sends `request_finished`) through
        `sync_to_async`: two thread hops on every request. Their receivers here do no I/O on the loop's thread:
        `close_old_connections` finds no connection on it (the ORM refuses to run on an event loop; the hot path's
        queries run on the DB thread), and `reset_queries`, `reset_urlconf` and `close_caches` (a no-op for the
        local-memory and Redis caches) only touch this thread's state. So they run on the loop."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request():
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client went away while the response was being sent
            return response

        # As in Django: notice a client that hangs up while the view runs, and cancel the view then.
        disconnect = asyncio.create_task(self.listen_for_disconnect(receive))
        processing = asyncio.create_task(process_request())
        await asyncio.wait([disconnect, processing], return_when=asyncio.FIRST_COMPLETED)
        for task in (disconnect, processing):
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        try:
            response = processing.result()
        except asyncio.CancelledError:
            signals.request_finished.send(sender=self.__class__)
        else:
            response.close()
        body_file.close()

    def load_middleware(self, is_async=False):
        # BaseHandler reads settings.MIDDLEWARE; swap in the lean list only while this handler is built (at start-up,
        # before any request is served).
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = full


def build_application():
    django_app = get_asgi_application()  # sets Django up
    api_app = APIHandler()
    api_app.load_middleware(is_async=True)
    fast_paths = tuple(settings.API_FAST_PATHS)

    async def application(scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(fast_paths):
            await api_app(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)
        else:
            await django_app(scope, receive, send)

    return application


async def lifespan(receive, send) -> None:
    """The ASGI lifespan protocol (Django has none): at start-up, drain on SIGTERM/SIGINT; at shutdown, once the
    server has finished the requests in flight, wait for their background work and flush the usage records
    (common/shutdown.py)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            shutdown.install_signal_hooks(asyncio.get_running_loop())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # A call whose client left is bounded by REQUEST_TIMEOUT from then; the margin covers its record.
            await shutdown.drain(within=settings.REQUEST_TIMEOUT + 5)
            await send({"type": "lifespan.shutdown.complete"})
            return
