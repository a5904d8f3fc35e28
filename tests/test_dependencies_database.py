"""Database gone, and back: while it is unreachable requests answer 503 `database_unavailable` with Retry-After (djllm's
shape under /api/, OpenAI's under /v1/) and readiness says so; once it is back, the first request of every kind
succeeds, on every thread of the worker that kept a connection, without a restart.

The server processes reach PostgreSQL through a TCP proxy of the test's own, so the test can kill exactly their
connections (`pg_terminate_backend`, what a PostgreSQL restart does to them) and take "the database" away and bring
it back, without touching the shared server or other connections. Runs under ASGI (uvicorn: the lean API stack's
shared sync thread, with and without the hot path's database thread) and under WSGI (gunicorn, with persistent
connections)."""

import os
import socket
import sys
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from django.db import OperationalError, connection
from django.test import Client

from accounts import services
from accounts.models import APIToken
from llm.models import UsageRecord
from tests.gateway_fixtures import OPENAI_KEY
from tests.processes import ManagedProcess, Worker, free_port, require_shared_database, shared_database_url

CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7}


class PostgresProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL. `down()` cuts every connection and answers new ones by hanging up
    at once (the database is gone); `back()` forwards again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.closed = False
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self.lock:  # the pair is over: both directions were shut down, the worker's side saw it
                self.pairs = [pair for pair in self.pairs if source not in pair]

    def upstream_ports(self) -> list[int]:
        """The local ports of the proxy's connections to PostgreSQL: `pg_stat_activity.client_port` of the
        server processes' sessions, and of nobody else's."""
        with self.lock:
            ports = []
            for _, upstream in self.pairs:
                try:
                    ports.append(upstream.getsockname()[1])
                except OSError:
                    pass
            return ports

    def down(self) -> None:
        self.up = False
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def back(self) -> None:
        self.up = True

    def stop(self) -> None:
        self.closed = True
        self.listener.close()
        self.down()


def terminate_backends(proxy: PostgresProxy) -> int:
    """What a PostgreSQL restart does to the server processes' sessions (and only theirs). Returns once the server
    has closed them and the proxy has passed that on, so the worker's sockets have seen it."""
    ports = proxy.upstream_ports()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE client_port = ANY(%s) AND pid <> pg_backend_pid()",
            [ports],
        )
        terminated = cursor.fetchone()[0]
    for _ in range(600):
        if not set(ports) & set(proxy.upstream_ports()):
            return terminated
        time.sleep(0.05)
    raise AssertionError("PostgreSQL did not close the terminated sessions")


class WsgiWorker(Worker):
    """`gunicorn config.wsgi:application` (sync worker, threads), as on PythonAnywhere-style WSGI hosting."""

    def __init__(self, name: str, env: dict, log_dir) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--log-level",
            "warning",
        ]
        ManagedProcess.__init__(self, f"worker-{name}", command, env, log_dir)
        self.name = name


SERVERS = {
    # ASGI as deployed: the hot path's queries on the database thread, the rest on asgiref's shared thread.
    "asgi": (Worker, {"DB_THREAD_ENABLED": "true"}),
    # ASGI with every sync call on asgiref's shared thread.
    "asgi-shared-thread-only": (Worker, {"DB_THREAD_ENABLED": "false"}),
    # WSGI with persistent connections kept by the request threads.
    "wsgi": (WsgiWorker, {"DB_THREAD_ENABLED": "false", "CONN_MAX_AGE": "600"}),
}


@pytest.fixture(params=list(SERVERS))
def server(request, transactional_db, fake_upstream, prices, tmp_path):
    require_shared_database()
    direct = urlsplit(shared_database_url())
    proxy = PostgresProxy(direct.hostname or "127.0.0.1", direct.port or 5432)
    through_proxy = urlunsplit(
        direct._replace(netloc=direct.netloc.replace(direct.netloc.split("@")[-1], f"127.0.0.1:{proxy.port}"))
    )
    worker_class, extra = SERVERS[request.param]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=through_proxy,
        LOG_LEVEL="WARNING",
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=fake_upstream.openai_base_url,
        RATE_LIMIT="1000/m",
        LLM_RETRY_ATTEMPTS="1",
        **extra,
    )
    worker = worker_class(request.param, env, tmp_path).wait_until_serving()
    yield worker, proxy
    worker.stop()
    proxy.stop()


def _token(name: str) -> str:
    user = services.user_create(username=f"db-{name}")
    return services.api_token_create(user=user, name=name)[1]


def _requests(url: str, plaintext: str) -> dict[str, httpx.Response]:
    """One request of each kind, in this order: readiness (shared sync thread), an LLM call (token lookup and
    usage record on the database thread, the token's last-used stamp on the shared thread), a DRF resource, and
    the webhook."""
    auth = {"Authorization": f"Bearer {plaintext}"}
    with httpx.Client(base_url=url, timeout=30) as http:
        return {
            "ready": http.get("/api/v1/health/ready"),
            "chat": http.post("/v1/chat/completions", json=CHAT_BODY, headers=auth),
            "usage": http.get("/api/v1/usage", headers=auth),
            "webhook": http.post("/api/v1/webhook", json={"prompt": "hi", "temperature": 0.7}, headers=auth),
        }


def _all_ok(answers: dict[str, httpx.Response]) -> None:
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 200), {
        name: r.text[:300] for name, r in answers.items() if r.status_code != 200
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_database_gone_answers_503_then_the_first_request_after_it_is_back_succeeds(server):
    worker, proxy = server
    tokens = {phase: _token(phase) for phase in ("warm", "killed", "down")}

    _all_ok(_requests(worker.url, tokens["warm"]))  # every thread now keeps a connection

    # PostgreSQL restarts: every session of the worker is terminated. The next requests succeed at once.
    assert terminate_backends(proxy) >= 1
    _all_ok(_requests(worker.url, tokens["killed"]))
    assert APIToken.objects.get(name="killed").last_used_at is not None  # the stamp's thread reconnected

    # The database is gone.
    proxy.down()
    with httpx.Client(base_url=worker.url, timeout=30) as http:
        assert http.get("/api/v1/health").status_code == 200  # liveness does not need the database
        gone = _requests(worker.url, tokens["down"])
    assert {name: r.status_code for name, r in gone.items()} == dict.fromkeys(gone, 503)
    for name in ("chat", "usage", "webhook", "ready"):
        assert gone[name].headers.get("Retry-After") == "5" or name == "ready", name
    chat_error = gone["chat"].json()["error"]
    assert (chat_error["code"], chat_error["type"]) == ("database_unavailable", "api_error")  # OpenAI's shape
    for name in ("usage", "webhook"):
        error = gone[name].json()["error"]
        assert error["code"] == "database_unavailable", (name, error)
        assert error["request_id"] == gone[name].headers["X-Request-ID"]
    ready_error = gone["ready"].json()["error"]
    assert ready_error["code"] == "not_ready" and ready_error["details"]["cache"] == "ok"
    assert ready_error["details"]["database"] == "unavailable"  # the driver's text goes to the log only

    # It is back: the very first request of each kind succeeds, without a restart.
    proxy.back()
    _all_ok(_requests(worker.url, tokens["down"]))
    assert APIToken.objects.get(name="down").last_used_at is not None
    assert UsageRecord.objects.filter(token__name="down", status="ok").count() == 2  # chat and webhook
    assert worker.process.poll() is None


# --- The same answers on the embedded defaults (SQLite): the database "fails" where the code asks it ------------


def _unreachable(*args, **kwargs):
    raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')


@pytest.mark.django_db
def test_fast_path_answers_503_database_unavailable_in_both_shapes(token, gateway_settings, monkeypatch):
    from accounts import token_cache

    monkeypatch.setattr(token_cache, "_load", _unreachable)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")

    chat = client.post("/v1/chat/completions", CHAT_BODY, content_type="application/json")
    assert chat.status_code == 503, chat.content
    assert chat["Retry-After"] == "5"
    assert chat.json() == {
        "error": {
            "message": "The database is not available. Try again shortly.",
            "type": "api_error",
            "param": None,
            "code": "database_unavailable",
        }
    }
    webhook = client.post("/api/v1/webhook", {"prompt": "hi"}, content_type="application/json")
    assert webhook.status_code == 503 and webhook["Retry-After"] == "5"
    error = webhook.json()["error"]
    assert error["code"] == "database_unavailable" and error["request_id"] == webhook["X-Request-ID"]
    assert gateway_settings.requests == []  # nothing reached the upstream


@pytest.mark.django_db
def test_drf_resources_answer_503_database_unavailable(auth_client, monkeypatch):
    from llm.apis import usage

    monkeypatch.setattr(usage, "usage_summary_for_user", _unreachable)
    response = auth_client.get("/api/v1/usage")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "database_unavailable"


_SILENT_DATABASE_PROBE = """
import json, django
django.setup()
from django.test import Client
client = Client()
ready = client.get("/api/v1/health/ready")
usage = client.get("/api/v1/usage", HTTP_AUTHORIZATION="Bearer djl_abcdefgh_" + "x" * 43)
print(json.dumps({"ready": [ready.status_code, ready.json()],
                  "usage": [usage.status_code, usage.json(), usage.headers.get("Retry-After")]}))
"""


def test_a_database_host_that_never_answers_gives_503_not_a_hang(tmp_path):
    """PostgreSQL's host accepts nothing and refuses nothing (a host gone from the network): the request answers 503
    database_unavailable once DATABASE_CONNECT_TIMEOUT has passed, instead of waiting on the socket for good. Runs in
    a process of its own with djllm's own settings."""
    import json
    import subprocess

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the kernel's backlog; no server ever speaks
    try:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": f"postgres://nobody@127.0.0.1:{silent.getsockname()[1]}/gone",
            "DATABASE_CONNECT_TIMEOUT": "2",
            "REDIS_URL": "",
        }
        # Without the timeout the probe would wait for good; `timeout` turns that into a failure.
        result = subprocess.run(
            [sys.executable, "-c", _SILENT_DATABASE_PROBE], env=env, capture_output=True, text=True, timeout=150
        )
    finally:
        silent.close()
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    status, body = seen["ready"]
    assert status == 503 and body["error"]["code"] == "not_ready"
    assert body["error"]["details"]["database"] == "unavailable"  # the driver's text goes to the log only
    status, body, retry_after = seen["usage"]
    assert (status, body["error"]["code"], retry_after) == (503, "database_unavailable", "5")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_hung_up_on_is_dropped_before_use_and_a_healthy_one_is_kept():
    """The check behind the shared thread's healing, on a thread of its own: a healthy idle connection is kept, even
    in a process with more file descriptors than select() handles; one the server terminated is closed, no query
    sent; the next query reconnects."""
    import resource
    from concurrent.futures import ThreadPoolExecutor

    from common.db_connections import close_dropped_connections

    require_shared_database()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1500
    if soft < wanted and (hard == resource.RLIM_INFINITY or hard >= wanted):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    spare = [open(os.devnull) for _ in range(max(0, min(wanted, resource.getrlimit(resource.RLIMIT_NOFILE)[0]) - 100))]

    def backend_pid() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    thread = ThreadPoolExecutor(max_workers=1)
    try:
        first = thread.submit(backend_pid).result()
        if len(spare) > 1100:  # the spare files took the low numbers: the socket is beyond select()'s reach
            assert thread.submit(lambda: connection.connection.fileno()).result() > 1024
        assert thread.submit(close_dropped_connections).result() == 0  # healthy and idle: kept
        assert thread.submit(backend_pid).result() == first

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
            cursor.execute("SELECT 1")
            for _ in range(600):
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [first])
                if cursor.fetchone()[0] == 0:
                    break
                time.sleep(0.05)
        assert thread.submit(close_dropped_connections).result() == 1  # noticed without a query
        assert thread.submit(backend_pid).result() != first  # and the next query simply reconnects
    finally:
        thread.submit(lambda: connection.close()).result()
        thread.shutdown()
        for f in spare:
            f.close()


@pytest.mark.django_db
def test_pages_answer_a_plain_503_while_the_database_is_unreachable(client, user, monkeypatch):
    from accounts import selectors

    user.save(update_fields=["password"])  # the factory's password, stored, so the session sticks
    client.force_login(user)
    monkeypatch.setattr(selectors, "api_tokens_for_user", _unreachable)
    page = client.get("/account/")
    assert page.status_code == 503
    assert page["Retry-After"] == "5" and page["Content-Type"].startswith("text/plain")
    assert page.content.decode() == "The database is not available. Try again shortly."
