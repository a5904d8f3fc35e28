"""A real ASGI server (uvicorn + djllm's `config.asgi.application`, lean API stack included) on 127.0.0.1, in a
background thread, for tests that drive djllm with real HTTP clients such as the `openai` SDK."""

import asyncio
import socket
import threading
import time

import pytest
import uvicorn


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
def live_djllm(transactional_db, gateway_settings):
    """djllm served over real HTTP; the test database is shared with the server thread."""
    from config.asgi import application

    server = LiveServer(application).start()
    yield server
    server.stop()
