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
import time

import httpx
import pytest

from accounts import services
from accounts.models import APIToken
from tests.processes import Worker, require_shared_database, shared_database_url, start_workers

PASSWORD = "pw-for-revocation-test-1"

pytestmark = pytest.mark.redis


@pytest.fixture
def two_workers(transactional_db, tmp_path):
    require_shared_database()
    env = {k: v for k, v in os.environ.items() if k != "API_TOKEN_LOCAL_CACHE_SECONDS"}  # the default is tested
    env.update(DJANGO_SETTINGS_MODULE="config.settings.test", DATABASE_URL=shared_database_url(), LOG_LEVEL="WARNING")
    workers = start_workers(("A", "B"), env, tmp_path)
    yield workers
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
