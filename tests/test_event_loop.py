"""Nothing on the hot path blocks the event loop.

The ASGI app runs in this test's own event loop in asyncio debug mode with a 150 ms slow-callback threshold. Every
database query and (when Redis is configured) every cache call is made slow on purpose, 300 ms of `time.sleep`,
so any of them made on the loop's thread would show up as a slow callback. Made properly (in a worker thread),
they don't. The local-memory cache does no I/O, so it is left fast and may be called on the loop.
"""

import asyncio
import logging
import time

import httpx
import pytest
from django.db.backends import utils as db_utils

from bench.fake_upstream import Usage as FakeUsage
from llm.models import UsageRecord
from tests.live import close_server_thread_connections

pytestmark = pytest.mark.django_db(transaction=True)
SLOW = 0.3


def _slowed(original):
    def slow(*args, **kwargs):
        time.sleep(SLOW)
        return original(*args, **kwargs)

    return slow


@pytest.fixture
def slow_io(monkeypatch, settings):
    monkeypatch.setattr(db_utils.CursorWrapper, "execute", _slowed(db_utils.CursorWrapper.execute))
    monkeypatch.setattr(db_utils.CursorWrapper, "executemany", _slowed(db_utils.CursorWrapper.executemany))
    if settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        from django.core.cache.backends.redis import RedisCacheClient

        for name in ("get", "set", "add", "incr", "delete"):
            monkeypatch.setattr(RedisCacheClient, name, _slowed(getattr(RedisCacheClient, name)))


async def _round(client: httpx.AsyncClient, headers: dict, tag: str) -> list[int]:
    chat = {"messages": [{"role": "user", "content": f"hello {tag}"}]}
    requests = [
        client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", **chat}, headers=headers),
        client.post("/v1/chat/completions", json={"model": "claude-haiku-4-5", **chat}, headers=headers),
        client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "stream": True, **chat}, headers=headers),
        client.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "temperature": 0, **chat}, headers=headers),
        client.post("/api/v1/webhook", json={"prompt": f"text {tag}", "type": "summary"}, headers=headers),
    ]
    responses = await asyncio.gather(*requests)
    return [r.status_code for r in responses]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_hot_path_never_blocks_the_loop(token, prices, gateway_settings, slow_io, settings):
    from config.asgi import application

    settings.DB_THREAD_ENABLED = True  # as in production
    gateway_settings.configure(usage=FakeUsage(input_tokens=10, output_tokens=5), latency_ms=5)
    headers = {"Authorization": f"Bearer {token[1]}"}
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
        # One warm-up round: first use imports modules and builds clients, once per process.
        assert await _round(client, headers, "warm") == [200] * 5
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.15
        # Our own handler on asyncio's logger (the ASGI app's setup may reconfigure the root logger's handlers).
        collect = _Collect()
        logging.getLogger("asyncio").addHandler(collect)
        try:
            statuses = await _round(client, headers, "measured")
            statuses += await _round(client, headers, "measured")  # the temperature-0 request is a cache hit now
        finally:
            loop.set_debug(False)
            logging.getLogger("asyncio").removeHandler(collect)
    assert statuses == [200] * 10
    slow = [message for message in collect.messages if "took" in message]
    assert slow == [], slow
    assert await UsageRecord.objects.filter(status="cached").acount() >= 1
    assert await UsageRecord.objects.acount() == 15
    close_server_thread_connections()
