"""SIGTERM to a real `make serve`-like server (gunicorn with one uvicorn worker, config/gunicorn.py): it stops taking
requests, answers the call in flight, and writes every usage record before it exits, including the one of a call
whose client had hung up (that call finishes in the background while the worker drains)."""

import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal

import httpx
import pytest

from llm.models import UsageRecord
from tests.gateway_fixtures import OPENAI_KEY
from tests.processes import BASE_DIR, ManagedProcess, free_port, shared_database_url
from tests.test_cancellation import COST, USAGE, hang_up_once_upstream_has

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(transactional_db, fake_upstream, prices, tmp_path):
    port = free_port()
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=shared_database_url(),
        DB_THREAD_ENABLED="true",  # records go through the group-commit queue, as in production
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=fake_upstream.openai_base_url,
        LLM_PROVIDER="openai",
        RATE_LIMIT="1000/m",
        REQUEST_TIMEOUT="20",
        LOG_LEVEL="WARNING",
    )
    command = [sys.executable, "-m", "gunicorn", "config.asgi:application", "-c", "config/gunicorn.py"]
    command += ["--workers", "1", "--bind", f"127.0.0.1:{port}", "--log-level", "info"]
    process = ManagedProcess("gunicorn", command, env, tmp_path)
    process.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{process.url}/api/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.process.poll() is not None or time.monotonic() > deadline:
            process.stop()
            raise RuntimeError(f"the server did not start:\n{process.log()}")
        time.sleep(0.1)
    yield process
    process.stop()  # before transactional_db flushes the tables


def test_sigterm_finishes_the_call_in_flight_and_writes_every_record(server, token, fake_upstream):
    headers = {"Authorization": f"Bearer {token[1]}"}
    url = f"{server.url}/v1/chat/completions"
    answered: dict = {}

    def in_flight():
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "answer me"}]}
        try:
            answered["response"] = httpx.post(url, json=body, headers=headers, timeout=60)
        except Exception as exc:  # the assertion below shows it
            answered["error"] = exc

    fake_upstream.configure(latency_ms=2000, usage=USAGE, reply="finished before exit")
    client = threading.Thread(target=in_flight)
    client.start()
    fake_upstream.wait_for_requests(1, timeout=30)
    # A second call, answered upstream later than the first; its client hangs up: it goes on in the background.
    fake_upstream.configure(latency_ms=5000)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "nobody waits for me"}]}
    hang_up_once_upstream_has(fake_upstream, 2, url, body, headers)

    server.process.send_signal(signal.SIGTERM)
    server.wait_for_log("Shutting down")  # the worker closed its listening socket
    with pytest.raises(httpx.TransportError):
        httpx.post(url, json=body, headers=headers, timeout=10)

    client.join(timeout=60)
    assert "error" not in answered, answered.get("error")
    response = answered["response"]
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "finished before exit"
    assert server.process.wait(timeout=60) == 0, server.log()

    rows = {row.status: row for row in UsageRecord.objects.all()}
    assert sorted(rows) == ["cancelled", "ok"], server.log()
    assert (rows["ok"].input_tokens, rows["ok"].output_tokens, rows["ok"].cost_usd) == (1000, 200, COST)
    cancelled = rows["cancelled"]
    assert (cancelled.input_tokens, cancelled.output_tokens, cancelled.usage_estimated) == (1000, 200, False)
    assert cancelled.cost_usd == COST and cancelled.http_status == 499
    assert sum(row.cost_usd for row in rows.values()) == 2 * COST == Decimal("0.00054")
    assert len(fake_upstream.requests) == 2  # the refused request never reached the upstream
    assert "draining" in server.log()


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"REQUEST_TIMEOUT": "60"}, 75), ({"REQUEST_TIMEOUT": "12.5"}, 28), ({"GRACEFUL_TIMEOUT": "99"}, 99)],
)
def test_make_serve_graceful_timeout_follows_request_timeout(env, expected):
    """One upstream attempt must fit in the graceful timeout: it is REQUEST_TIMEOUT + 15 s unless set."""
    environment = {k: v for k, v in os.environ.items() if k not in ("REQUEST_TIMEOUT", "GRACEFUL_TIMEOUT")}
    environment.update(env)
    read = "import runpy; conf = runpy.run_path('config/gunicorn.py'); print(conf['graceful_timeout'], conf['timeout'])"
    out = subprocess.run(
        [sys.executable, "-c", read], cwd=BASE_DIR, env=environment, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(expected)] * 2  # a worker restarting on its own gets the same time
    serve = subprocess.run(["make", "-n", "serve"], cwd=BASE_DIR, capture_output=True, text=True, check=True).stdout
    assert "-c config/gunicorn.py" in serve and "--graceful-timeout" not in serve
