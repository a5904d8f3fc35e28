"""The cost matrix: provider x (plain, stream, cached input / cache read+write, upstream error, client cancel), each
stored cost equal to the hand computation to the last decimal.

Prices (tests/gateway_fixtures.py, USD per 1M tokens): gpt-4o-mini 0.15 in / 0.075 cached / 0.60 out;
claude-haiku-4-5 1.00 in / 0.10 cache read / 1.25 cache write / 5.00 out."""

import json
import time
from decimal import Decimal

import httpx
import pytest

from bench.fake_upstream import Usage as FakeUsage
from llm.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

OPENAI, CLAUDE = "gpt-4o-mini", "claude-haiku-4-5"
M = Decimal(1_000_000)

# (model, upstream usage, stored input/cached/write/output, hand-computed cost)
CASES = {
    "openai-plain": (
        OPENAI,
        FakeUsage(1000, 200),
        (1000, 0, 0, 200),
        (1000 * Decimal("0.15") + 200 * Decimal("0.60")) / M,
    ),
    "openai-cached-input": (
        OPENAI,
        FakeUsage(1000, 200, cached_tokens=600),
        (1000, 600, 0, 200),
        (400 * Decimal("0.15") + 600 * Decimal("0.075") + 200 * Decimal("0.60")) / M,
    ),
    "claude-plain": (
        CLAUDE,
        FakeUsage(1000, 200),
        (1000, 0, 0, 200),
        (1000 * Decimal("1.00") + 200 * Decimal("5.00")) / M,
    ),
    "claude-cache-read-write": (
        CLAUDE,
        FakeUsage(100, 200, cached_tokens=3000, cache_write_tokens=2000),
        (5100, 3000, 2000, 200),
        (100 * Decimal("1.00") + 3000 * Decimal("0.10") + 2000 * Decimal("1.25") + 200 * Decimal("5.00")) / M,
    ),
}


def _post(url: str, token: str, body: dict) -> list[str] | dict:
    with httpx.Client(timeout=15) as client:
        if not body.get("stream"):
            return client.post(url, json=body, headers={"Authorization": f"Bearer {token}"}).json()
        with client.stream("POST", url, json=body, headers={"Authorization": f"Bearer {token}"}) as response:
            return [line for line in response.iter_lines() if line.startswith("data: ")]


def _record(**filters) -> UsageRecord:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = UsageRecord.objects.filter(**filters).first()
        if record is not None:
            return record
        time.sleep(0.05)
    raise AssertionError(f"no usage record with {filters}")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("case", list(CASES))
def test_cost_equals_hand_computation(live_djllm, token, prices, fake_upstream, case, stream):
    model, usage, stored, expected = CASES[case]
    fake_upstream.configure(usage=usage, anthropic_delta_usage="full")
    _post(
        f"{live_djllm.url}/v1/chat/completions",
        token[1],
        {"model": model, "stream": stream, "messages": [{"role": "user", "content": "price me"}]},
    )
    record = _record(status="ok")
    assert (record.input_tokens, record.cached_input_tokens, record.cache_write_tokens, record.output_tokens) == stored
    assert record.stream is stream and record.usage_estimated is False
    assert record.cost_usd == expected, (record.cost_usd, expected)


@pytest.mark.parametrize("model", [OPENAI, CLAUDE])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_error_costs_nothing(live_djllm, token, prices, fake_upstream, settings, model, stream):
    fake_upstream.fail_next("500", times=None)
    _post(
        f"{live_djllm.url}/v1/chat/completions",
        token[1],
        {"model": model, "stream": stream, "messages": [{"role": "user", "content": "fail"}]},
    )
    record = _record(status="upstream_error")
    assert (record.http_status, record.input_tokens, record.output_tokens, record.cost_usd) == (502, 0, 0, Decimal(0))


def test_client_cancel_openai_is_estimated_and_priced(live_djllm, token, prices, fake_upstream):
    """OpenAI sends usage only at the end: a cancelled stream is estimated from the text (~4 chars a token)."""
    words = " ".join(f"w{i:03d}" for i in range(50))  # 50 x "wNNN " = 249 characters
    fake_upstream.configure(reply=words, chunks=50, chunk_delay_ms=100, usage=FakeUsage(999, 999))
    _cancel_after_first_chunk(live_djllm.url, token[1], OPENAI)
    record = _record(status="cancelled")
    assert record.usage_estimated and record.output_tokens >= 1
    prompt_chars = len("cancel me")
    assert record.input_tokens == -(-prompt_chars // 4)  # ceil(9 / 4) = 3
    assert record.cost_usd == (record.input_tokens * Decimal("0.15") + record.output_tokens * Decimal("0.60")) / M


def test_client_cancel_anthropic_keeps_reported_input(live_djllm, token, prices, fake_upstream):
    """Anthropic reports input (and cache) tokens up front in message_start: those are exact even when cancelled."""
    fake_upstream.configure(
        reply=" ".join(f"w{i:03d}" for i in range(50)),
        chunks=50,
        chunk_delay_ms=100,
        usage=FakeUsage(700, 999, cached_tokens=300, cache_write_tokens=100),
    )
    _cancel_after_first_chunk(live_djllm.url, token[1], CLAUDE)
    record = _record(status="cancelled")
    assert (record.input_tokens, record.cached_input_tokens, record.cache_write_tokens) == (1100, 300, 100)
    assert record.usage_estimated and 1 <= record.output_tokens < 999
    assert (
        record.cost_usd
        == (
            700 * Decimal("1.00")
            + 300 * Decimal("0.10")
            + 100 * Decimal("1.25")
            + record.output_tokens * Decimal("5.00")
        )
        / M
    )


def _cancel_after_first_chunk(url: str, token: str, model: str) -> None:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "cancel me"}]}
    with httpx.Client(timeout=10) as client:
        with client.stream(
            "POST", f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break
