"""Budgets hold across processes: two real server processes (uvicorn) take concurrent requests against one token
whose budget fits k of them. Each request's reservation is a conditional UPDATE in the shared database, so at most k
reach the upstream and the spend never passes the budget. Runs on SQLite (the test database's file, shared by both
processes) and on PostgreSQL; Redis plays no part in it."""

import asyncio
import os
from decimal import ROUND_UP, Decimal

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from accounts import services
from accounts.models import APIToken
from bench.fake_upstream import Usage as FakeUsage
from llm.limits import month_start
from llm.models import SpendCounter, UsageRecord
from llm.pricing import input_token_bound, max_cost_of, price_for
from llm.providers import ChatRequest, Message
from tests.gateway_fixtures import OPENAI_KEY
from tests.processes import shared_database_url, start_workers

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 14
FITS = 3
MAX_TOKENS = 2000
PROMPT = "How much is left?"


def _database_url() -> str:
    if connection.vendor == "sqlite":
        return f"sqlite:///{connection.settings_dict['NAME']}"  # a file: both processes open the same database
    return shared_database_url()


@pytest.fixture
def two_workers(transactional_db, fake_upstream, prices, tmp_path):
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=_database_url(),
        LOG_LEVEL="WARNING",
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=fake_upstream.openai_base_url,
        RATE_LIMIT_ENABLED="false",
        RESPONSE_CACHE_ENABLED="false",
        LLM_RETRY_ATTEMPTS="1",
    )
    workers = start_workers(("A", "B"), env, tmp_path)
    yield workers
    for worker in workers:  # before transactional_db flushes the tables
        worker.stop()


def test_concurrent_requests_in_two_processes_never_spend_past_the_budget(two_workers, fake_upstream):
    a, b = two_workers
    request = ChatRequest(model="gpt-4o", messages=[Message(role="user", content=PROMPT)], max_tokens=MAX_TOKENS)
    most = max_cost_of(request, price_for("openai", "gpt-4o"), "openai")  # about $0.02
    budget = (FITS * most).quantize(Decimal("0.01"), rounding=ROUND_UP)  # budgets are whole cents
    assert FITS * most <= budget < (FITS + 1) * most
    # Every call costs exactly its reservation and is slow enough for all of them to be in flight together: the
    # budget fits FITS of them, however the two processes interleave.
    fake_upstream.configure(
        usage=FakeUsage(input_tokens=input_token_bound(request), output_tokens=MAX_TOKENS), latency_ms=300
    )
    user = services.user_create(username="racer")
    token, plaintext = services.api_token_create(user=user, name="race")
    APIToken.objects.filter(pk=token.pk).update(monthly_budget_usd=budget)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {plaintext}"}) as http:
            return await asyncio.gather(
                *(http.post(f"{(a, b)[i % 2].url}/v1/chat/completions", json=body) for i in range(REQUESTS))
            )

    responses = asyncio.run(send_all())
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * FITS + [402] * (REQUESTS - FITS), [r.text for r in responses if r.status_code >= 500]
    refused = [r.json()["error"] for r in responses if r.status_code == 402]
    assert {error["code"] for error in refused} == {"budget_exceeded"}
    assert len(fake_upstream.requests) == FITS

    row = SpendCounter.objects.get(scope="token", key=token.pk, month=month_start(timezone.now().date()))
    assert Decimal(row.spent_usd) <= budget
    assert Decimal(row.spent_usd) == pytest.approx(FITS * most, abs=Decimal("1e-9"))  # SQLite keeps decimals as floats
    assert Decimal(row.reserved_usd) == pytest.approx(Decimal("0"), abs=Decimal("1e-9"))
    assert UsageRecord.objects.filter(status="ok").count() == FITS
    assert UsageRecord.objects.filter(status="budget_exceeded", http_status=402).count() == REQUESTS - FITS
