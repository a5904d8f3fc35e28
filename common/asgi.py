"""The ASGI entry point: the LLM hot path gets its own Django handler with a lean, fully async middleware stack.

Django's built-in middleware (sessions, CSRF, auth, messages, security, WhiteNoise) is sync; under ASGI each one
costs a hop to a worker thread on every request. The token-authenticated API needs none of it — only the request
id and CORS — so requests under `API_FAST_PATHS` go to a second handler built from `API_MIDDLEWARE`, and
everything else (admin, account page, docs, calendar OAuth) to the normal one. Same URLconf, same views.
"""

import asyncio
import gc
import io
import logging
import os
import re
import sys
import tempfile
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.core import signals
from django.core.asgi import get_asgi_application
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import close_old_connections, reset_queries
from django.dispatch import Signal
from django.http import HttpRequest, HttpResponseBase
from django.urls import get_resolver, set_script_prefix

from common import shutdown
from common.db_connections import close_dropped_on_request_started
from common.errors import AppError, InvalidRequest
from common.parsers import request_too_large

logger = logging.getLogger(__name__)

# Paths on the lean stack that need no token (liveness and readiness probes).
_OPEN_PATHS = ("/api/v1/health",)
# Bodies larger than Django's DATA_UPLOAD_MAX_MEMORY_SIZE are taken where a view reads them with a limit of its own.
_BODY_LIMITS = (("/api/v1/batch", "JOB_UPLOAD_MAX_BYTES"),)
# Most resolved fixed paths kept (API_FAST_PATHS is a prefix list: a client can send any path below one of them).
_RESOLVED_MAX = 256

# Set by the accounts app (AppConfig.ready): async (request) -> the authenticated token, raising AppError otherwise.
# `common` does not import the apps that build on it.
_authenticator: Callable[[HttpRequest], Awaitable[object]] | None = None


def set_authenticator(authenticate: Callable[[HttpRequest], Awaitable[object]]) -> None:
    global _authenticator
    _authenticator = authenticate


def body_limit_setting(path: str) -> str:
    for prefix, setting in _BODY_LIMITS:
        if path.startswith(prefix):
            return setting
    return "DATA_UPLOAD_MAX_MEMORY_SIZE"


async def _before_body(request: HttpRequest) -> Exception | None:
    """What can be decided from the headers alone. Returns the exception to answer with (rendered by
    APIErrorMiddleware, like any other), or None to go on and read the body. On success the token is kept on the
    request (`djllm_token`), so the view does not look it up again."""
    try:
        request.get_host()  # ALLOWED_HOSTS, as Django's CommonMiddleware would check it
        request.djllm_host_checked = True
        if request.method == "OPTIONS" or request.path.startswith(_OPEN_PATHS) or _authenticator is None:
            return None  # CORS preflights carry no token; the probes need none
        request.djllm_token = await _authenticator(request)
        setting = body_limit_setting(request.path)
        limit = getattr(settings, setting)
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return InvalidRequest("The Content-Length header is not a number.", code="bad_request")
        if limit is not None and declared > limit:
            return request_too_large(setting, declared)
    except Exception as exc:  # noqa: BLE001  (rendered like any view's exception, logged there if unexpected)
        return exc
    return None


# Receivers of the request signals that only look after this thread's database connections. The loop's thread has
# none (the ORM refuses to run on an event loop; the hot path's queries run on the DB thread), so the lean stack skips
# them: each walks the thread's connections through asgiref's Local, together ~10 % of a cache hit's CPU.
_DB_RECEIVERS = frozenset({reset_queries, close_old_connections, close_dropped_on_request_started})


def _send_on_loop(signal: Signal, sender, **named) -> None:
    """`signal.send(sender, **named)` on the event loop's thread, minus the receivers in `_DB_RECEIVERS`."""
    if not signal.receivers:
        return
    sync_receivers, async_receivers = signal._live_receivers(sender)
    if async_receivers:  # not expected; Django's own send, as before
        signal.send(sender=sender, **named)
        return
    for receiver in sync_receivers:
        if receiver not in _DB_RECEIVERS:
            receiver(signal=signal, sender=sender, **named)


def _close(response: HttpResponseBase) -> None:
    """`response.close()`, whose `request_finished` goes through `_send_on_loop`."""
    for closer in response._resource_closers:
        try:
            closer()
        except Exception:  # noqa: BLE001, S110  (as Django's close: a closer's failure does not stop the others)
            pass
    response._resource_closers.clear()
    response.closed = True
    _send_on_loop(signals.request_finished, sender=response._handler_class)


class APIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        # (resolver, path) -> ResolverMatch of the fast paths without a variable part (see resolve_request).
        self._resolved: dict = {}

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
        local-memory and Redis caches) only touch this thread's state. So they run on the loop, and the ones that only
        look after this thread's database connections, which it has none of, are skipped (`_send_on_loop`)."""
        # Headers first: the host, the token and the declared length are checked before the body is read, so an
        # unauthenticated caller cannot make the server take in (and spool to disk) a body at all. An early error is
        # still answered through the middleware (request id, CORS, security headers) by APIErrorMiddleware.
        request, error_response = self.create_request(scope, io.BytesIO())
        if request is None:
            await self.send_response(error_response, send)
            _close(error_response)
            return
        early_error = await _before_body(request)
        body_file = io.BytesIO()
        if early_error is None:
            try:
                body_file = await self.read_body_limited(receive, body_limit_setting(request.path))
            except RequestAborted:
                return
            except AppError as error:
                early_error = error
        if early_error is not None:
            request.djllm_early_error = early_error
        else:
            request._stream = body_file  # the request was built before its body was read: give it the body now
        set_script_prefix(get_script_prefix(scope))
        _send_on_loop(signals.request_started, sender=self.__class__, scope=scope)

        async def process_request():
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client went away while the response was being sent
            return response

        if early_error is not None:
            # Answered from the headers alone; the body was never read, so there is no disconnect to listen for
            # (the next message would be the body's).
            _close(await process_request())
            return

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
            _send_on_loop(signals.request_finished, sender=self.__class__)
        else:
            _close(response)
        body_file.close()

    async def read_body_limited(self, receive, setting: str):
        """Django's `read_body`, stopping at the limit `setting` names (a chunked body declares no length)."""
        limit = getattr(settings, setting)
        body_file = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            size += len(chunk)
            if limit is not None and size > limit:
                body_file.close()
                raise request_too_large(setting)
            if chunk:
                body_file.write(chunk)
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file

    def resolve_request(self, request):
        """Django's, with the matches of fixed paths (`/v1/chat/completions`) kept: resolving walks the URLconf's
        patterns, measured at a tenth of a cache hit's CPU. Keyed by the resolver, so a changed URLconf (tests) gets
        a new one; a path with a variable part (an id) is resolved every time, so this holds one entry per fixed
        path of the lean stack at most."""
        if hasattr(request, "urlconf"):
            return super().resolve_request(request)
        resolver = get_resolver()
        key = (resolver, request.path_info)
        match = self._resolved.get(key)
        if match is None:
            match = resolver.resolve(request.path_info)  # raises Resolver404 for an unknown path: nothing kept
            if not match.args and not match.kwargs and len(self._resolved) < _RESOLVED_MAX:
                self._resolved[key] = match
        request.resolver_match = match
        return match

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
    # Fast paths with a variable part (`/api/v1/conversations/{id}/messages`), as regular expressions.
    fast_patterns = re.compile("|".join(f"(?:{pattern})" for pattern in settings.API_FAST_PATH_PATTERNS) or "(?!)")

    async def application(scope, receive, send):
        if scope["type"] == "http" and (scope["path"].startswith(fast_paths) or fast_patterns.fullmatch(scope["path"])):
            await api_app(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)
        else:
            await django_app(scope, receive, send)

    return application


def server_line() -> str:
    """What this worker runs on: its event loop and the server's HTTP parser (uvicorn's `auto` picks uvloop and
    httptools when they are installed, asyncio and h11 otherwise; `make serve` should show the first two)."""
    loop = type(asyncio.get_running_loop())
    parsers = [name for name in ("httptools", "h11") if f"uvicorn.protocols.http.{name}_impl" in sys.modules]
    return (
        f"Worker {os.getpid()} serving: event loop {loop.__module__}.{loop.__qualname__}, "
        f"HTTP parser {'/'.join(parsers) or 'not uvicorn'}"
    )


def freeze_startup_objects() -> int:
    """Put what the worker built while starting (Django, the URLconf and its views, the SDKs, the server's own
    modules: ~230,000 objects, all living as long as the process) out of the cycle collector's reach, and return how
    many there are. Each of the collector's full passes went over all of them while every request on the worker
    waited: 140-200 ms each under `make bench`'s load, which made the p99. Frozen (`gc.freeze`), a full pass looks
    only at what requests left behind. The URLconf is loaded first, so its views are among them."""
    get_resolver().url_patterns  # noqa: B018  (imports the URLconf and its views now, not on the first request)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def lifespan(receive, send) -> None:
    """The ASGI lifespan protocol (Django has none): at start-up, drain on SIGTERM/SIGINT and freeze the start-up
    objects (`freeze_startup_objects`); at shutdown, once the server has finished the requests in flight, wait for
    their background work and flush the usage records (common/shutdown.py)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            shutdown.install_signal_hooks(asyncio.get_running_loop())
            frozen = freeze_startup_objects()
            logger.info("%s; %d start-up objects frozen", server_line(), frozen)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # A call whose client left is bounded by REQUEST_TIMEOUT from then; the margin covers its record.
            await shutdown.drain(within=settings.REQUEST_TIMEOUT + 5)
            await send({"type": "lifespan.shutdown.complete"})
            return
