"""/metrics under `make serve`'s server with two workers: the counts of every worker add up in one scrape, whichever
worker answers it (prometheus_client's multiprocess mode through PROMETHEUS_MULTIPROC_DIR, config/gunicorn.py)."""

import os

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llm.models import UsageRecord
from tests.gateway_fixtures import OPENAI_KEY
from tests.processes import Gunicorn, shared_database_url

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 12


@pytest.fixture
def server(transactional_db, fake_upstream, prices, tmp_path):
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=shared_database_url(),
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=fake_upstream.openai_base_url,
        LLM_PROVIDER="openai",
        RATE_LIMIT="1000/m",
        LOG_LEVEL="WARNING",
        METRICS_ALLOWED_IPS="127.0.0.1",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    process = Gunicorn("metrics", env, tmp_path, workers=2)
    try:
        process.wait_until_serving()
    except BaseException:
        process.stop()
        raise
    yield process
    process.stop()  # before transactional_db flushes the tables


def total_requests(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "litellm_proxy_total_requests_metric":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


def test_the_workers_counts_add_up_in_every_scrape(server, token, tmp_path):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
    for _ in range(REQUESTS):  # a new connection each: either worker may take it
        response = httpx.post(
            f"{server.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token[1]}"}, timeout=30
        )
        assert response.status_code == 200, response.text
    assert UsageRecord.objects.count() == REQUESTS
    for _ in range(6):  # scrapes answered by either worker
        scraped = httpx.get(f"{server.url}/metrics", timeout=30)
        assert scraped.status_code == 200, scraped.text
        assert total_requests(scraped.text) == REQUESTS
    files = sorted(path.name for path in (tmp_path / "metrics").iterdir())
    assert any(name.startswith("counter_") for name in files), files
