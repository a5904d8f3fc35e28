"""Nothing billed goes unrecorded: a client that hangs up on a non-streamed call (or a batch) over real HTTP. The
upstream call already sent finishes in the background and is recorded `cancelled` with the usage the provider
reported; an aborted one with an estimate; an item never sent is not sent, and still has its one row."""

import asyncio
import time
from decimal import Decimal

import httpx
import pytest
from django.test import Client

from accounts import token_cache
from bench.fake_upstream import Usage as FakeUsage
from common import shutdown
from llm.models import SpendCounter, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

# gpt-4o-mini: $0.15 in, $0.60 out per 1M tokens (tests/gateway_fixtures.py)
USAGE = FakeUsage(input_tokens=1000, output_tokens=200)
COST = Decimal("0.00027")  # 1000 * 0.15e-6 + 200 * 0.60e-6


def wait_for_rows(n: int, timeout: float = 20.0, **filters) -> list[UsageRecord]:
    deadline = time.monotonic() + timeout
    while True:
        rows = list(UsageRecord.objects.filter(**filters).order_by("id"))
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def bearer(token) -> dict[str, str]:
    return {"Authorization": f"Bearer {token[1]}"}


def hang_up_once_upstream_has(fake_upstream, n: int, url: str, body: dict, headers: dict[str, str]) -> None:
    """POST `body` with httpx and close the connection (cancel the client's call) once the fake upstream has
    received `n` requests: the call is then under way upstream, and the client is gone."""

    async def main():
        async with httpx.AsyncClient(timeout=30) as client:
            call = asyncio.ensure_future(client.post(url, json=body, headers=headers))
            while len(fake_upstream.requests) < n:
                if call.done():
                    raise AssertionError(f"answered before the upstream had {n} requests: {call.result()}")
                await asyncio.sleep(0.01)
            call.cancel()  # httpx closes the connection: djllm sees the client go away
            with pytest.raises(asyncio.CancelledError):
                await call

    asyncio.run(main())


@pytest.mark.parametrize(
    ("path", "body", "auth"),
    [
        (
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "take your time"}]},
            "Authorization",
        ),
        ("/api/v1/webhook", {"prompt": "take your time", "type": "summary", "model": "gpt-4o-mini"}, "X-API-Token"),
    ],
)
def test_hang_up_on_a_slow_call_records_it_cancelled_with_its_real_usage(
    live_djllm, token, prices, fake_upstream, path, body, auth
):
    fake_upstream.configure(latency_ms=2500, usage=USAGE, reply="worth every token")
    headers = {auth: f"Bearer {token[1]}" if auth == "Authorization" else token[1]}
    hang_up_once_upstream_has(fake_upstream, 1, f"{live_djllm.url}{path}", body, headers)

    [row] = wait_for_rows(1)
    assert (row.status, row.http_status, row.error_code) == ("cancelled", 499, "client_disconnected")
    assert row.error_message == "The client disconnected before the answer was complete."
    assert (row.input_tokens, row.output_tokens, row.usage_estimated) == (1000, 200, False)
    assert row.cost_usd == COST
    assert (row.provider, row.upstream_model, row.stream) == ("openai", "gpt-4o-mini", False)
    [upstream] = fake_upstream.requests
    assert upstream.status == 200 and not upstream.disconnected, "djllm stopped reading the answer it pays for"
    assert UsageRecord.objects.count() == 1


def test_an_aborted_call_after_the_hang_up_is_estimated_and_not_retried(
    live_djllm, token, prices, fake_upstream, settings
):
    """The upstream never answers: djllm's own timeout aborts the attempt. The client is gone, so no retry starts
    (three attempts are allowed); the prompt is billed on an estimate."""
    settings.REQUEST_TIMEOUT = 1.0
    fake_upstream.fail_next("timeout", times=3, hold_s=20)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 400}]}
    hang_up_once_upstream_has(fake_upstream, 1, f"{live_djllm.url}/v1/chat/completions", body, bearer(token))

    [row] = wait_for_rows(1)
    assert (row.status, row.http_status, row.error_code) == ("cancelled", 499, "client_disconnected")
    assert row.usage_estimated is True
    assert row.input_tokens >= 100 and row.output_tokens == 0  # 400 characters, ~4 a token
    assert row.cost_usd == Decimal(row.input_tokens) * Decimal("0.15") / 1_000_000
    assert len(fake_upstream.requests) == 1, "an attempt was started for a client that had gone"


def test_hang_up_before_the_first_chunk_of_a_stream_is_recorded(live_djllm, token, prices, fake_upstream):
    fake_upstream.configure(latency_ms=2500, usage=USAGE)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "x" * 400}]}
    hang_up_once_upstream_has(fake_upstream, 1, f"{live_djllm.url}/v1/chat/completions", body, bearer(token))

    [row] = wait_for_rows(1)
    assert (row.status, row.http_status, row.stream) == ("cancelled", 499, True)
    assert row.usage_estimated is True and row.input_tokens >= 100 and row.cost_usd > 0
    fake_upstream.wait_until(lambda: fake_upstream.requests[0].disconnected)  # the stream is not read for nobody


def test_batch_cancelled_mid_way_bills_the_items_in_flight_and_sends_no_more(
    live_djllm, token, prices, fake_upstream, settings
):
    settings.BATCH_CONCURRENCY = 2
    fake_upstream.configure(latency_ms=2500, usage=USAGE)
    items = [{"id": f"A{i}", "prompt": f"row number {i}"} for i in range(5)]
    body = {"type": "summary", "model": "gpt-4o-mini", "items": items}
    hang_up_once_upstream_has(fake_upstream, 2, f"{live_djllm.url}/api/v1/batch", body, bearer(token))

    rows = wait_for_rows(5)
    assert len(rows) == 5 and {row.status for row in rows} == {"cancelled"}
    assert {(row.endpoint, row.http_status, row.error_code) for row in rows} == {
        (
            "batch",
            499,
            "client_disconnected",
        )
    }
    assert len({row.batch_id for row in rows}) == 1 and rows[0].batch_id.startswith("batch_")
    billed = [row for row in rows if row.cost_usd]
    assert len(billed) == 2, "the two items in flight are billed"
    assert all((r.input_tokens, r.output_tokens, r.usage_estimated) == (1000, 200, False) for r in billed)
    assert sum(r.cost_usd for r in rows) == 2 * COST
    unsent = [row for row in rows if not row.cost_usd]
    assert all((r.input_tokens, r.output_tokens, r.upstream_model) == (0, 0, "") for r in unsent)
    upstream = fake_upstream.requests
    assert len(upstream) == 2 and all(r.status == 200 and not r.disconnected for r in upstream)


def test_a_draining_worker_starts_no_retry(token, gateway_settings, prices, fake_upstream):
    """After SIGTERM (common/shutdown.py) the attempt in flight is the last: its failure is answered, not retried."""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    fake_upstream.fail_next("500", times=3)
    shutdown.begin_draining()
    try:
        response = client.post("/v1/chat/completions", body, content_type="application/json")
    finally:
        shutdown._draining.clear()
    assert response.status_code == 502
    assert len(fake_upstream.requests) == 1  # three attempts are allowed when not draining
    [row] = UsageRecord.objects.all()
    assert (row.status, row.error_code) == ("upstream_error", "upstream_server_error")
    assert client.post("/v1/chat/completions", body, content_type="application/json").status_code == 200
    assert len(fake_upstream.requests) == 4  # not draining: the remaining two faults were retried through


def test_a_cancelled_call_settles_its_budget_reservation(live_djllm, token, prices, fake_upstream):
    """Under a budget the call's maximum cost is reserved before it is sent; its cancelled record settles it: the
    real cost is spent, nothing stays reserved."""
    row = token[0]
    row.monthly_budget_usd = Decimal("5.00")
    row.save()
    token_cache.clear()  # the server runs in this process
    fake_upstream.configure(latency_ms=2500, usage=USAGE)
    body = {"model": "gpt-4o-mini", "max_tokens": 500, "messages": [{"role": "user", "content": "take your time"}]}
    hang_up_once_upstream_has(fake_upstream, 1, f"{live_djllm.url}/v1/chat/completions", body, bearer(token))

    [record] = wait_for_rows(1)
    assert (record.status, record.cost_usd, record.usage_estimated) == ("cancelled", COST, False)
    counter = SpendCounter.objects.get(scope="token", key=row.pk)
    assert (counter.spent_usd, counter.reserved_usd) == (COST, 0)


def test_a_draining_worker_starts_no_new_round_for_a_rate_limited_batch_item(
    token, gateway_settings, prices, fake_upstream
):
    """The batch's own back-off rounds (BATCH_RATE_LIMIT_RETRIES) stop too: the item fails with its 429."""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    fake_upstream.fail_next("429", times=None, retry_after=0)
    body = {"type": "summary", "model": "gpt-4o-mini", "items": [{"id": "A1", "prompt": "rate limited"}]}
    shutdown.begin_draining()
    try:
        response = client.post("/api/v1/batch", body, content_type="application/json")
    finally:
        shutdown._draining.clear()
    assert response.status_code == 200
    [item] = response.json()["results"]
    assert (item["status"], item["error"]["code"]) == ("error", "upstream_rate_limited")
    assert len(fake_upstream.requests) == 1
    [row] = UsageRecord.objects.all()
    assert (row.status, row.error_code, row.endpoint) == ("upstream_error", "upstream_rate_limited", "batch")


def test_a_cancelled_batch_keeps_its_concurrency_slots_until_its_calls_end(
    live_djllm, token, prices, fake_upstream, settings
):
    """Sent again at once (a client that timed out and retries), the batch waits for the slots its first run still
    uses in the background: never more than BATCH_CONCURRENCY of the token's items at the upstream."""
    settings.BATCH_CONCURRENCY = 2
    fake_upstream.configure(latency_ms=2500, usage=USAGE)
    body = {
        "type": "summary",
        "model": "gpt-4o-mini",
        "items": [{"id": "A1", "prompt": "one"}, {"id": "A2", "prompt": "two"}],
    }
    headers = {"Authorization": f"Bearer {token[1]}"}
    url = f"{live_djllm.url}/api/v1/batch"
    hang_up_once_upstream_has(fake_upstream, 2, url, body, headers)

    again = httpx.post(url, json=body, headers=headers, timeout=60)

    assert again.status_code == 200 and again.json()["totals"]["ok"] == 2
    assert fake_upstream.stats["max_in_flight"] == 2
    rows = wait_for_rows(4)
    assert sorted(row.status for row in rows) == ["cancelled", "cancelled", "ok", "ok"]
    assert all(row.cost_usd == COST for row in rows)
