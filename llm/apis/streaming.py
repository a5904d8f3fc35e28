"""Streamed answers (server-sent events) under ASGI and under WSGI.

Under ASGI the stream is read in the request's own event loop, chunk by chunk, as the view returns it. Under WSGI
(PythonAnywhere) Django runs an async view in an event loop that ends when the view returns, and reads an async
stream afterwards in another one: the upstream connection, opened in the first loop, is gone by then, and the
client got only the first chunk. So under WSGI the whole stream, its opening included, runs on one long-lived
event loop in a thread of its own (one per process), and the WSGI server reads it through a plain iterator.
"""

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, StreamingHttpResponse

from llm import pipeline

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_lock = threading.Lock()


def _stream_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid():  # a forked worker starts its own
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="djllm-wsgi-streams", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def _wsgi(request: HttpRequest) -> bool:
    return isinstance(request, WSGIRequest)


async def open_stream(request: HttpRequest, call: pipeline.GatewayCall) -> pipeline.StreamSession:
    if not _wsgi(request):
        return await pipeline.open_stream(call)
    future = asyncio.run_coroutine_threadsafe(pipeline.open_stream(call), _stream_loop())
    return await asyncio.wrap_future(future)


async def _next(events: AsyncIterator[bytes]) -> tuple[bool, bytes]:
    try:
        return True, await anext(events)
    except StopAsyncIteration:
        return False, b""


def _read_on_stream_loop(events: AsyncIterator[bytes]) -> Iterator[bytes]:
    loop = _stream_loop()
    try:
        while True:
            more, event = asyncio.run_coroutine_threadsafe(_next(events), loop).result()
            if not more:
                return
            yield event
    finally:
        # Ended, or the WSGI server closed the response because the client went away: close the stream on its own
        # loop, which records it (as `cancelled` when it was cut short).
        asyncio.run_coroutine_threadsafe(events.aclose(), loop).result()


def event_stream_response(request: HttpRequest, events: AsyncIterator[bytes]) -> StreamingHttpResponse:
    content = _read_on_stream_loop(events) if _wsgi(request) else events
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
