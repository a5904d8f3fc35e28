"""Budget reservations over real HTTP, with the hot path's database thread as in production: held while the upstream
call runs, settled to the real cost when it ends (answered, streamed, or its client hung up)."""

import threading
from decimal import Decimal

import httpx
import openai
import pytest
from django.db import connections
from django.utils import timezone

from accounts import token_cache
from bench.fake_upstream import Usage as FakeUsage
from llm.limits import month_start
from llm.models import SpendCounter, UsageRecord
from llm.pricing import max_cost_of, price_for
from llm.providers import ChatRequest, Message
from tests.test_cancellation import hang_up_once_upstream_has, wait_for_rows

pytestmark = pytest.mark.django_db(transaction=True)

USAGE = FakeUsage(input_tokens=1000, output_tokens=200)
COST = Decimal("0.00027")  # gpt-4o-mini: 1000 x 0.15 + 200 x 0.60 per million
PROMPT = "What does it cost?"
MAX_TOKENS = 300


def set_budget(token, amount: str) -> None:
    token[0].monthly_budget_usd = Decimal(amount)
    token[0].save()
    token_cache.clear()


def token_counter(token) -> SpendCounter:
    return SpendCounter.objects.get(scope="token", key=token[0].pk, month=month_start(timezone.now().date()))


def most() -> Decimal:
    request = ChatRequest(model="gpt-4o-mini", messages=[Message(role="user", content=PROMPT)], max_tokens=MAX_TOKENS)
    return max_cost_of(request, price_for("openai", "gpt-4o-mini"), "openai")


def body(**extra) -> dict:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        **extra,
    }


def test_the_reservation_is_held_during_the_call_and_settled_to_the_real_cost(live_djllm, token, prices, fake_upstream):
    set_budget(token, "1.00")
    fake_upstream.configure(latency_ms=1500, usage=USAGE)
    answers = []
    sender = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                f"{live_djllm.url}/v1/chat/completions",
                json=body(),
                headers={"Authorization": f"Bearer {token[1]}"},
                timeout=30,
            )
        )
    )
    sender.start()
    fake_upstream.wait_for_requests(1, timeout=10)  # the call is under way upstream
    during = token_counter(token)
    assert (during.spent_usd, during.reserved_usd) == (0, most())
    sender.join(timeout=30)
    assert answers[0].status_code == 200
    after = token_counter(token)
    assert (after.spent_usd, after.reserved_usd) == (COST, 0)


def test_a_stream_settles_its_reservation(live_djllm, token, prices, fake_upstream):
    set_budget(token, "1.00")
    fake_upstream.configure(usage=USAGE, reply="streamed for a price")
    client = openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key=token[1], max_retries=0, timeout=10)
    stream = client.chat.completions.create(**body(), stream=True, stream_options={"include_usage": True})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "streamed for a price"
    [row] = wait_for_rows(1)
    assert row.stream and row.cost_usd == COST
    counter = token_counter(token)
    assert (counter.spent_usd, counter.reserved_usd) == (COST, 0)


def test_a_hang_up_bills_the_real_cost_and_releases_the_rest(live_djllm, token, prices, fake_upstream):
    set_budget(token, "1.00")
    fake_upstream.configure(latency_ms=1500, usage=USAGE)
    headers = {"Authorization": f"Bearer {token[1]}"}
    hang_up_once_upstream_has(fake_upstream, 1, f"{live_djllm.url}/v1/chat/completions", body(), headers)
    [row] = wait_for_rows(1)
    assert row.status == "cancelled" and row.cost_usd == COST
    counter = token_counter(token)
    assert (counter.spent_usd, counter.reserved_usd) == (COST, 0)


def test_without_a_budget_the_hot_path_adds_no_database_work(live_djllm, token, prices, fake_upstream):
    fake_upstream.configure(usage=USAGE)
    from common.db_thread import _get_executor

    def log_queries() -> int:  # on the database thread, on its own kept connection
        connections["default"].force_debug_cursor = True
        return len(connections["default"].queries_log)

    def queries_since(start: int) -> list[str]:
        db = connections["default"]
        db.force_debug_cursor = False
        return [query["sql"] for query in list(db.queries_log)[start:]]

    start = _get_executor().submit(log_queries).result()
    response = httpx.post(
        f"{live_djllm.url}/v1/chat/completions", json=body(), headers={"Authorization": f"Bearer {token[1]}"}
    )
    assert response.status_code == 200
    wait_for_rows(1)
    statements = _get_executor().submit(queries_since, start).result()
    assert any("INSERT" in sql for sql in statements), "the log saw the request's record being written"
    # No reservation and no release: no statement touches what is reserved (a first row of the month is created with
    # its default, 0, as before).
    assert not [sql for sql in statements if sql.startswith("UPDATE") and "reserved_usd" in sql]
    assert UsageRecord.objects.get().cost_usd == COST
