"""A real ASGI server (uvicorn + djllm's `config.asgi.application`, lean API stack included) on 127.0.0.1, in a
background thread, for tests that drive djllm with real HTTP clients such as the `openai` SDK."""

import asyncio
import socket
import threading
import time

import pytest
import uvicorn

from common.db_thread import close_db_thread_connections
from tests.openapi_check import LIVE_SERVERS


def close_server_thread_connections() -> None:
    """Close what the server's threads kept open, so the test database can be flushed and dropped: the hot path's
    database thread, and asgiref's shared thread for sync calls (the API stack runs them there, see common/asgi.py)."""
    from asgiref.sync import SyncToAsync
    from django.db import connections

    close_db_thread_connections()
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


class LiveServer:
    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", loop="asyncio", http="h11", ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_djllm(transactional_db, gateway_settings, settings):
    """djllm served over real HTTP; the test database is shared with the server thread. As in production, the hot
    path's database work runs on its dedicated thread (common/db_thread.py)."""
    from config.asgi import application

    settings.DB_THREAD_ENABLED = True
    server = LiveServer(application).start()
    LIVE_SERVERS.add(f"127.0.0.1:{server.port}")  # its answers are checked against the schema (openapi_check)
    yield server
    LIVE_SERVERS.discard(f"127.0.0.1:{server.port}")
    server.stop()
    close_server_thread_connections()
