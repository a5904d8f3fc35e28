"""djllm over real HTTP (uvicorn + the lean ASGI stack), driven by the unmodified `openai` SDK and raw httpx:
streaming, usage on streams, SDK exceptions, client disconnects mid-stream."""

import json
import time
from decimal import Decimal

import httpx
import openai
import pytest

from bench.fake_upstream import Usage as FakeUsage
from llm.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sdk(live_djllm, token, prices):
    return openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key=token[1], max_retries=0, timeout=10)


def wait_for_records(n: int, timeout: float = 5.0, **filters) -> list[UsageRecord]:
    """The usage row of a stream is written when the stream ends, which may be just after the client saw it end."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(UsageRecord.objects.filter(**filters).order_by("id"))
        if len(records) >= n or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def test_sdk_plain_create(sdk, fake_upstream):
    fake_upstream.configure(reply="Hello from upstream", usage=FakeUsage(input_tokens=12, output_tokens=4))
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert completion.choices[0].message.content == "Hello from upstream"
    assert completion.usage.prompt_tokens == 12 and completion.usage.completion_tokens == 4
    [record] = wait_for_records(1)
    assert (record.status, record.stream, record.cost_usd) == ("ok", False, Decimal("0.0000042"))


def test_sdk_stream_openai_with_usage_is_billed(sdk, fake_upstream):
    fake_upstream.configure(
        reply="one two three four", chunks=4, usage=FakeUsage(input_tokens=1000, output_tokens=200, cached_tokens=400)
    )
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1000
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 400
    assert fake_upstream.last_request.body["stream_options"] == {"include_usage": True}
    [record] = wait_for_records(1)
    assert (record.status, record.stream, record.usage_estimated) == ("ok", True, False)
    assert record.cost_usd == Decimal("0.000240")  # streamed requests are billed like plain ones
    assert record.time_to_first_token_ms is not None


def test_sdk_stream_without_include_usage_still_billed(sdk, fake_upstream):
    fake_upstream.configure(usage=FakeUsage(input_tokens=100, output_tokens=100))
    chunks = list(
        sdk.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "x"}])
    )
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage...
    assert fake_upstream.last_request.body["stream_options"] == {"include_usage": True}  # ...djllm did
    [record] = wait_for_records(1)
    assert record.cost_usd == Decimal("0.000075")


def test_sdk_stream_anthropic_usage_not_double_counted(sdk, fake_upstream):
    fake_upstream.configure(
        reply="Salut tout le monde",
        anthropic_delta_usage="full",
        usage=FakeUsage(input_tokens=300, output_tokens=100, cached_tokens=1000, cache_write_tokens=500),
    )
    chunks = list(
        sdk.chat.completions.create(
            model="claude-haiku-4-5",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "system", "content": "French."}, {"role": "user", "content": "Hello everyone"}],
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Salut tout le monde"
    assert chunks[-1].usage.prompt_tokens == 1800 and chunks[-1].usage.completion_tokens == 100
    [record] = wait_for_records(1)
    assert (record.input_tokens, record.cached_input_tokens, record.cache_write_tokens, record.output_tokens) == (
        1800,
        1000,
        500,
        100,
    )
    assert record.cost_usd == Decimal("0.001525")


def test_sdk_exceptions(sdk, live_djllm, token, fake_upstream):
    bad = openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key="djl_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        bad.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert auth.value.body["code"] == "token_invalid"
    with pytest.raises(openai.BadRequestError) as unknown:
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert unknown.value.body["code"] == "unknown_model"
    row = token[0]
    row.rate_limit = "1/h"
    row.save()
    time.sleep(0.6)  # the server's token cache trusts a lookup for 0.5 s
    sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "first"}])
    with pytest.raises(openai.RateLimitError) as limited:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "second"}])
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_upstream_stream_cut_is_an_error_event_and_estimated(sdk, fake_upstream):
    fake_upstream.configure(reply="a b c d e f g h", chunks=8)
    fake_upstream.fail_next("stream_cut", after_chunks=3)
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "cut me"}]
    )
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(received)
    [record] = wait_for_records(1)
    assert (record.status, record.usage_estimated) == ("upstream_error", True)
    assert record.output_tokens >= 1 and record.input_tokens >= 1
    assert record.cost_usd is not None and record.cost_usd > 0


def test_client_disconnect_mid_stream_records_cancelled(live_djllm, token, prices, fake_upstream):
    fake_upstream.configure(reply=" ".join(f"w{i}" for i in range(40)), chunks=40, chunk_delay_ms=100)
    body = {"model": "claude-haiku-4-5", "stream": True, "messages": [{"role": "user", "content": "long story"}]}
    with httpx.Client(timeout=10) as client:
        with client.stream(
            "POST", f"{live_djllm.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token[1]}"}
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[6:])["object"] == "chat.completion.chunk"
    [record] = wait_for_records(1, status="cancelled")
    assert (record.http_status, record.error_code, record.stream) == (499, "client_disconnected", True)
    assert record.input_tokens > 0  # Anthropic reported input in message_start
    assert record.output_tokens >= 1 and record.usage_estimated
    assert record.cost_usd is not None and record.cost_usd > 0
    upstream = fake_upstream.wait_for_requests(1)[0]
    deadline = time.monotonic() + 5
    while not fake_upstream.requests[0].disconnected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_upstream.requests[0].disconnected, "djllm kept reading from upstream after the client left"
    assert upstream.stream


def test_webhook_stream_and_cached_replay(live_djllm, token, prices, fake_upstream):
    fake_upstream.configure(reply="short summary here", usage=FakeUsage(input_tokens=100, output_tokens=10))
    payload = {"prompt": "A long text", "type": "summary", "stream": True, "temperature": 0}

    def run():
        with httpx.Client(timeout=10) as client:
            with client.stream(
                "POST", f"{live_djllm.url}/api/v1/webhook", json=payload, headers={"X-API-Token": token[1]}
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]

    events = run()
    assert "".join(e.get("delta", "") for e in events) == "short summary here"
    done = events[-1]
    assert done["done"] is True and done["cost_usd"] == "0.000021" and done["cached"] is False
    again = run()
    assert again[-1]["cached"] is True and again[-1]["cost_usd"] == "0" and again[-1]["result"] == "short summary here"
    assert len(fake_upstream.requests) == 1
    records = wait_for_records(2)
    assert [(r.status, r.stream) for r in records] == [("ok", True), ("cached", True)]
    assert records[1].saved_usd == Decimal("0.000021")


def test_sdk_tool_calls_pass_through_plain_and_streamed(sdk, fake_upstream):
    """OpenAI tool calls reach the client intact, whole and as streamed argument deltas."""
    event = {"title": "Team lunch", "start": "2026-12-01T13:00:00"}
    fake_upstream.configure(structured=event)
    tools = [{"type": "function", "function": {"name": "create_event", "parameters": {"type": "object"}}}]
    choice = {"type": "function", "function": {"name": "create_event"}}
    messages = [{"role": "user", "content": "team lunch next Tuesday at 1"}]

    plain = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools, tool_choice=choice)
    streamed = list(
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=messages, tools=tools, tool_choice=choice, stream=True
        )
    )

    [call] = plain.choices[0].message.tool_calls
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == ("function", "create_event", event)
    assert call.id.startswith("call_")
    assert plain.choices[0].finish_reason == "tool_calls"
    deltas = [tc for c in streamed if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "create_event" and deltas[0].index == 0
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == event
    assert [c.choices[0].finish_reason for c in streamed if c.choices][-1] == "tool_calls"
    assert fake_upstream.last_request.body["tool_choice"] == choice
    assert [r.status for r in wait_for_records(2)] == ["ok", "ok"]
