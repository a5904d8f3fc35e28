"""Nothing on the hot path blocks the event loop.

The ASGI app runs in this test's own event loop, in asyncio debug mode (which also raises on loop calls made from
the wrong thread). Every database query and (when Redis is configured) every cache call is watched: each notes
the thread it ran on, and none may have run on the loop's thread. That is the deterministic form of a
slow-callback check: a blocking call on the loop is caught however fast the machine happens to be, and a busy
machine (a GC pause, another process on the CPU) can't fail it. The local-memory cache does no I/O, so it is not
watched and may be called on the loop.
"""

import asyncio
import threading

import httpx
import pytest
from django.db.backends import utils as db_utils

from bench.fake_upstream import Usage as FakeUsage
from llm.models import UsageRecord
from tests.live import close_server_thread_connections

pytestmark = pytest.mark.django_db(transaction=True)


class _Watch:
    """Notes, for every watched I/O call, its name and whether it ran on the thread of the loop being watched."""

    def __init__(self) -> None:
        self.loop_thread: int | None = None
        self.calls: list[tuple[str, bool]] = []
        self.redis = False

    def wrap(self, name: str, original):
        def watched(*args, **kwargs):
            self.calls.append((name, threading.get_ident() == self.loop_thread))
            return original(*args, **kwargs)

        return watched

    def on_loop(self) -> list[str]:
        return [name for name, on_loop in self.calls if on_loop]


@pytest.fixture
def watched_io(monkeypatch, settings):
    watch = _Watch()
    for name in ("execute", "executemany"):
        monkeypatch.setattr(
            db_utils.CursorWrapper, name, watch.wrap(f"db.{name}", getattr(db_utils.CursorWrapper, name))
        )
    redis = settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    if redis:
        from django.core.cache.backends.redis import RedisCacheClient

        for name in ("get", "set", "add", "incr", "delete", "get_many", "set_many"):
            monkeypatch.setattr(RedisCacheClient, name, watch.wrap(f"redis.{name}", getattr(RedisCacheClient, name)))
    watch.redis = redis
    return watch


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


async def test_hot_path_never_blocks_the_loop(token, prices, gateway_settings, watched_io, settings):
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
        watched_io.loop_thread = threading.get_ident()
        watched_io.calls.clear()
        try:
            statuses = await _round(client, headers, "measured")
            statuses += await _round(client, headers, "measured")  # the temperature-0 request is a cache hit now
        finally:
            watched_io.loop_thread = None
            loop.set_debug(False)
    assert statuses == [200] * 10
    # The watch saw the hot path's I/O (usage-record inserts; cache and rate-limit calls on Redis)...
    names = {name for name, _ in watched_io.calls}
    assert "db.execute" in names, names
    if watched_io.redis:
        assert {"redis.get", "redis.set"} <= names, names
    # ...and none of it ran on the loop's thread.
    assert watched_io.on_loop() == []
    assert await UsageRecord.objects.filter(status="cached").acount() >= 1
    assert await UsageRecord.objects.acount() == 15
    close_server_thread_connections()
