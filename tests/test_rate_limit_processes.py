"""Rate limits are shared by every worker: two server processes on one Redis allow, together, exactly the limit.

django-ratelimit counts in the Django cache, which is Redis when REDIS_URL is set; so this runs in the
PostgreSQL + Redis pass of CI (two processes also need a shared database)."""

import os

import httpx
import pytest

from accounts import services
from llm.models import UsageRecord
from tests.gateway_fixtures import OPENAI_KEY
from tests.processes import require_shared_database, shared_database_url, start_workers

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
LIMIT = 5


@pytest.fixture
def two_workers(transactional_db, fake_upstream, prices, tmp_path):
    require_shared_database()
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=shared_database_url(),
        LOG_LEVEL="WARNING",
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=fake_upstream.openai_base_url,
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT="1000/m",
        LLM_RETRY_ATTEMPTS="1",
    )
    workers = start_workers(("A", "B"), env, tmp_path)
    yield workers
    for worker in workers:  # before transactional_db flushes the tables
        worker.stop()


def test_two_processes_share_one_limit(two_workers, fake_upstream):
    a, b = two_workers
    user = services.user_create(username="shared-limit")
    # Per hour, so the window cannot roll over during the test.
    _, plaintext = services.api_token_create(user=user, name="limited", rate_limit=f"{LIMIT}/h")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}
    statuses = {"A": [], "B": []}
    with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {plaintext}"}) as http:
        for i in range(3 * LIMIT):
            worker = (a, b)[i % 2]
            response = http.post(f"{worker.url}/v1/chat/completions", json=body)
            statuses[worker.name].append(response.status_code)
            if response.status_code == 429:
                assert response.json()["error"]["code"] == "rate_limited"
                assert response.headers["X-RateLimit-Limit"] == str(LIMIT)
    allowed = statuses["A"].count(200) + statuses["B"].count(200)
    assert allowed == LIMIT, statuses
    assert statuses["A"].count(200) >= 1 and statuses["B"].count(200) >= 1, "both workers served some"
    assert statuses["A"].count(429) + statuses["B"].count(429) == 2 * LIMIT
    assert len(fake_upstream.requests) == LIMIT
    assert UsageRecord.objects.filter(status="rate_limited").count() == 2 * LIMIT
    assert UsageRecord.objects.filter(status="ok").count() == LIMIT
