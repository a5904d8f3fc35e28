"""The API's lean ASGI handler (common/asgi.py) keeps Django's request contract: the request signals are sent once
per request, on the loop's own thread (no thread hop), and a client hanging up cancels the view."""

import asyncio
import threading

import httpx
import pytest
from django.core import signals

pytestmark = pytest.mark.django_db(transaction=True)


async def test_request_signals_are_sent_once_each_on_the_loop_thread(token):
    from config.asgi import application

    seen: list[tuple[str, int]] = []

    def started(**kwargs):
        seen.append(("started", threading.get_ident()))

    def finished(**kwargs):
        seen.append(("finished", threading.get_ident()))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            ok = await client.get("/api/v1/health")
            missing = await client.get("/v1/models")  # no token: answered by the view with a 401
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert (ok.status_code, missing.status_code) == (200, 401)
    loop_thread = threading.get_ident()
    assert seen == [("started", loop_thread), ("finished", loop_thread)] * 2


async def test_a_client_that_hangs_up_cancels_the_view(monkeypatch):
    """Django's behaviour, kept: the disconnect is noticed while the view runs, and the view is cancelled."""
    from common import asgi
    from config.asgi import application

    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow_view(self, request):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    monkeypatch.setattr(asgi.APIHandler, "get_response_async", slow_view)
    sent: list[dict] = []
    messages = iter([{"type": "http.request", "body": b"", "more_body": False}])
    hang_up = asyncio.Event()

    async def receive():
        message = next(messages, None)
        if message is not None:
            return message
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/health",
        "raw_path": b"/api/v1/health",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    handling = asyncio.ensure_future(application(scope, receive, send))
    await asyncio.wait_for(started.wait(), timeout=10)  # the view is running...
    hang_up.set()  # ...when the client goes away
    await asyncio.wait_for(handling, timeout=10)
    assert cancelled.is_set()
    assert sent == []  # nothing was answered to a client that is gone


async def test_the_lifespan_start_up_freezes_what_the_worker_built_while_starting(monkeypatch, caplog):
    """A worker's start-up objects (Django, the URLconf and its views, the SDKs) are moved out of the cycle
    collector's reach once it starts serving, so its full passes don't go over them while requests wait."""
    import gc
    import logging
    import re
    import sys

    from common import asgi, shutdown

    monkeypatch.setattr(shutdown, "install_signal_hooks", lambda loop: None)  # the test runner keeps its signals
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    gc.unfreeze()
    with caplog.at_level(logging.INFO, logger="common.asgi"):
        running = asyncio.ensure_future(asgi.lifespan(inbox.get, outbox.put))
        try:
            assert await asyncio.wait_for(outbox.get(), timeout=30) == {"type": "lifespan.startup.complete"}
            frozen = gc.get_freeze_count()
        finally:
            running.cancel()
            gc.unfreeze()
    assert frozen > 10_000
    assert "config.urls" in sys.modules and "llm.apis.chat" in sys.modules
    logged = re.search(r"serving: .*; (\d+) start-up objects frozen", caplog.text)
    assert logged and int(logged.group(1)) > 10_000  # frozen objects the requests since have freed leave the count
