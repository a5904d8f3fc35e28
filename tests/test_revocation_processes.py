"""A revoked token stops working in every worker process within one second.

How it works (accounts/token_cache.py): each process keeps its own small cache of token lookups and trusts an
entry for `API_TOKEN_LOCAL_CACHE_SECONDS` (default 0.5 s) before it reads the row again. There is no
cross-process invalidation to get wrong: the process that revokes forgets its own entry at once, and every other
process sees `revoked_at` on its next lookup, at most 0.5 s (plus one request) later.

How the test works: two real uvicorn processes serve `config.asgi:application` on free 127.0.0.1 ports against
pytest-django's *test* database (`transactional_db`, so the rows the test writes are committed and visible to
them). Both answer `GET /api/v1/me` for one token, which puts the token into each process's cache. The token's
owner then revokes it on the `/account/` page served by process A (session login, CSRF and all); A refuses the
token at once and B within a second. Two processes cannot share pytest's in-memory SQLite, so this runs in the
PostgreSQL + Redis pass of CI and is skipped elsewhere.
"""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from django.db import connection

from accounts import services
from accounts.models import APIToken

BASE_DIR = Path(__file__).resolve().parent.parent
PASSWORD = "pw-for-revocation-test-1"

pytestmark = pytest.mark.redis


def _test_database_url() -> str:
    db = connection.settings_dict  # after pytest-django's setup, NAME is the test database
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{quote(db['NAME'], safe='')}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Worker:
    """One `uvicorn config.asgi:application` process."""

    def __init__(self, name: str, env: dict, log_dir: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"worker-{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--lifespan",
                "off",
                "--log-level",
                "warning",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def two_workers(transactional_db, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("two server processes need a shared database: run with a PostgreSQL DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if k != "API_TOKEN_LOCAL_CACHE_SECONDS"}  # the default is tested
    env.update(DJANGO_SETTINGS_MODULE="config.settings.test", DATABASE_URL=_test_database_url(), LOG_LEVEL="WARNING")
    workers = []
    try:
        for name in ("A", "B"):
            worker = Worker(name, env, tmp_path)
            workers.append(worker)
            worker.wait_until_serving()
        yield workers
    finally:
        for worker in workers:  # before transactional_db flushes the tables
            worker.stop()


def _me(http: httpx.Client, worker: Worker, plaintext: str) -> httpx.Response:
    return http.get(f"{worker.url}/api/v1/me", headers={"Authorization": f"Bearer {plaintext}"})


def _csrf_token(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def test_revocation_on_one_worker_is_seen_by_the_other_within_a_second(two_workers):
    a, b = two_workers
    user = services.user_create(username="two-workers", password=PASSWORD)
    row, plaintext = services.api_token_create(user=user, name="shared")

    with httpx.Client(timeout=5.0) as api, httpx.Client(timeout=5.0, base_url=a.url) as browser:
        # Each worker looks the token up once, which puts it into that worker's cache.
        for worker in (a, b):
            response = _me(api, worker, plaintext)
            assert response.status_code == 200, (response.text, worker.log())
            assert response.json()["token"]["prefix"] == f"djl_{row.prefix}"

        # The owner logs in on worker A's /account/ page and revokes the token there.
        login_page = browser.get("/account/login/")
        login = browser.post(
            "/account/login/",
            data={"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": _csrf_token(login_page.text)},
        )
        assert login.status_code == 302 and login.headers["Location"] == "/account/", login.text
        account = browser.get("/account/")
        assert f"djl_{row.prefix}" in account.text
        revoke = browser.post(
            f"/account/tokens/{row.pk}/revoke", data={"csrfmiddlewaretoken": _csrf_token(account.text)}
        )
        revoked_at = time.monotonic()
        assert revoke.status_code == 302, revoke.text
        assert APIToken.objects.get(pk=row.pk).revoked_at is not None

        # Worker A forgot its cached copy when it revoked.
        response = _me(api, a, plaintext)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_revoked"

        # Worker B still holds a cached copy for at most API_TOKEN_LOCAL_CACHE_SECONDS; then it reads the row.
        while True:
            response = _me(api, b, plaintext)
            if response.status_code != 200 or time.monotonic() - revoked_at > 1.0:
                break
            time.sleep(0.05)
        assert response.status_code == 401, f"worker B still accepted the token {time.monotonic() - revoked_at:.2f}s on"
        assert response.json()["error"]["code"] == "token_revoked"
        assert time.monotonic() - revoked_at <= 1.0

    assert "Traceback" not in a.log() + b.log()
