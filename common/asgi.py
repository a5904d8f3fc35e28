"""The ASGI entry point: the LLM hot path gets its own Django handler with a lean, fully async middleware stack.

Django's built-in middleware (sessions, CSRF, auth, messages, security, WhiteNoise) is sync; under ASGI each one
costs a hop to a worker thread on every request. The token-authenticated API needs none of it — only the request
id and CORS — so requests under `API_FAST_PATHS` go to a second handler built from `API_MIDDLEWARE`, and
everything else (admin, account page, docs, calendar OAuth) to the normal one. Same URLconf, same views.
"""

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler


class APIHandler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        # Django wraps each request in a ThreadSensitiveContext, which starts (and later joins) a thread of the
        # request's own for its sync calls: measurable on every request of the hot path. Here the few sync calls
        # left (request signals, a token lookup every half second) share the process's one thread-sensitive
        # thread; the database work of the hot path runs on its own long-lived thread (common/db_thread.py).
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

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
        else:
            await django_app(scope, receive, send)

    return application
