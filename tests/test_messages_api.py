"""`POST /v1/messages` and `/v1/messages/count_tokens` driven by the unmodified `anthropic` SDK against a live djllm
(uvicorn + the lean ASGI stack) and the fake upstream: Claude models passed through, OpenAI models translated both
ways, Anthropic's stream events, tools, images, errors as the SDK's own classes, and the one usage row per request."""

import base64
import json
import time
from decimal import Decimal

import anthropic
import httpx
import pytest

from accounts.authentication import token_from_headers
from accounts.models import UserPreferences
from bench.fake_upstream import Usage as FakeUsage
from llm.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE = "claude-haiku-4-5"
GPT = "gpt-4o-mini"
# The same usage in each provider's convention: Anthropic's input excludes cache reads and writes, OpenAI's
# prompt count includes its cached tokens.
CLAUDE_USAGE = FakeUsage(input_tokens=300, output_tokens=100, cached_tokens=1000, cache_write_tokens=500)
# 300 x $1 + 1000 x $0.10 (read) + 500 x $1.25 (write) + 100 x $5, per million tokens.
CLAUDE_COST = Decimal("0.001525")
GPT_USAGE = FakeUsage(input_tokens=1000, output_tokens=200, cached_tokens=400)
GPT_COST = Decimal("0.000240")  # 600 x $0.15 + 400 x $0.075 + 200 x $0.60, per million tokens
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def client(live_djllm, token, prices):
    """The SDK with the djllm token as its API key (sent as `x-api-key`)."""
    return anthropic.Anthropic(base_url=live_djllm.url, api_key=token[1], max_retries=0, timeout=10)


@pytest.fixture
def bearer_client(live_djllm, token, prices):
    """The SDK with the djllm token as its auth token (sent as `Authorization: Bearer`)."""
    return anthropic.Anthropic(base_url=live_djllm.url, auth_token=token[1], max_retries=0, timeout=10)


def records(n: int, timeout: float = 5.0) -> list[UsageRecord]:
    """A stream's usage row is written as it ends, which may be just after the client saw the end."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(UsageRecord.objects.order_by("id"))
        if len(rows) >= n or time.monotonic() > deadline:
            time.sleep(0.1)  # and no second row follows
            return list(UsageRecord.objects.order_by("id"))
        time.sleep(0.05)


def test_create_on_a_claude_model_passes_the_request_through(client, fake_upstream, token):
    fake_upstream.configure(reply="Bonjour !", usage=CLAUDE_USAGE)
    system = [{"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}]
    message = client.messages.create(
        model=CLAUDE,
        max_tokens=64,
        system=system,
        top_k=5,
        metadata={"user_id": "u-42"},
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"] and message.content[0].text == "Bonjour !"
    assert message.stop_reason == "end_turn" and message.model == CLAUDE
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (300, 100)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (1000, 500)

    sent = fake_upstream.last_request
    assert sent.provider == "anthropic"
    assert sent.headers["x-api-key"] != token[1]  # the upstream gets djllm's key, never the caller's token
    assert sent.body["system"] == system and sent.body["top_k"] == 5  # as sent: cache_control, top_k, metadata
    assert sent.body["metadata"] == {"user_id": "u-42"} and sent.body["max_tokens"] == 64
    [record] = records(1)
    assert (record.endpoint, record.provider, record.upstream_model, record.status) == (
        "messages",
        "anthropic",
        CLAUDE,
        "ok",
    )
    assert (record.input_tokens, record.output_tokens) == (1800, 100)
    assert (record.cached_input_tokens, record.cache_write_tokens) == (1000, 500)
    assert record.cost_usd == CLAUDE_COST and record.stream is False


def test_create_on_an_openai_model_is_translated_both_ways(bearer_client, fake_upstream):
    fake_upstream.configure(reply="A red square.", usage=GPT_USAGE)
    message = bearer_client.messages.create(
        model=GPT,
        max_tokens=50,
        system="Describe images in one line.",
        stop_sequences=["END"],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert message.content[0].text == "A red square." and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (600, 400)
    assert (message.usage.output_tokens, message.usage.cache_creation_input_tokens) == (200, 0)

    sent = fake_upstream.last_request
    assert sent.provider == "openai" and sent.body["model"] == GPT
    assert sent.body["messages"] == [
        {"role": "system", "content": "Describe images in one line."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                {"type": "text", "text": "What is this?"},
            ],
        },
    ]
    assert sent.body["max_tokens"] == 50 and sent.body["stop"] == ["END"]
    [record] = records(1)
    assert (record.endpoint, record.provider, record.input_tokens, record.output_tokens) == (
        "messages",
        "openai",
        1000,
        200,
    )
    assert record.cost_usd == GPT_COST


@pytest.mark.parametrize("model, usage, cost", [(CLAUDE, CLAUDE_USAGE, CLAUDE_COST), (GPT, GPT_USAGE, GPT_COST)])
def test_stream_gives_the_text_and_the_final_message(client, fake_upstream, model, usage, cost):
    fake_upstream.configure(reply="one two three four", chunks=4, usage=usage)
    with client.messages.stream(
        model=model, max_tokens=64, system="Count.", messages=[{"role": "user", "content": "Count to four"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "one two three four" and len(pieces) == 4  # relayed chunk by chunk
    assert final.content[0].text == "one two three four" and final.stop_reason == "end_turn"
    expected = usage.input_tokens - usage.cached_tokens if model == GPT else usage.input_tokens
    assert (final.usage.input_tokens, final.usage.output_tokens) == (expected, usage.output_tokens)
    assert final.usage.cache_read_input_tokens == usage.cached_tokens
    assert final.usage.cache_creation_input_tokens == usage.cache_write_tokens
    [record] = records(1)
    assert (record.endpoint, record.stream, record.status, record.usage_estimated) == ("messages", True, "ok", False)
    assert record.cost_usd == cost


def test_stream_events_are_anthropics(live_djllm, token, prices, fake_upstream):
    fake_upstream.configure(reply="ab", chunks=2, usage=GPT_USAGE)
    body = {"model": GPT, "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", f"{live_djllm.url}/v1/messages", json=body, headers={"x-api-key": token[1]}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert events == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [d["type"] for d in data] == events
    assert data[3]["delta"] == {"type": "text_delta", "text": "a"}
    assert data[6]["delta"]["stop_reason"] == "end_turn" and data[6]["usage"]["output_tokens"] == 200


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_tool_use_round_trip(client, fake_upstream, model):
    fake_upstream.configure(structured={"city": "Paris"}, usage=FakeUsage(input_tokens=50, output_tokens=10))
    question = {"role": "user", "content": "Weather in Paris?"}
    first = client.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[question],
    )
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    if model == GPT:
        sent = fake_upstream.last_request.body
        assert sent["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": WEATHER_TOOL["input_schema"],
                    "description": "The weather in a city.",
                },
            }
        ]
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}

    fake_upstream.configure(reply="It is sunny in Paris.")
    answer = client.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[
            question,
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"},
                    {"type": "text", "text": "Summarise."},
                ],
            },
        ],
    )
    assert answer.content[0].text == "It is sunny in Paris." and answer.stop_reason == "end_turn"
    sent = fake_upstream.last_request.body["messages"]
    if model == GPT:
        assert sent[1]["tool_calls"] == [
            {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ]
        assert sent[2:] == [
            {"role": "tool", "content": "sunny, 21 C", "tool_call_id": call.id},
            {"role": "user", "content": "Summarise."},
        ]
    else:
        assert sent[2]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}
    assert [r.endpoint for r in records(2)] == ["messages", "messages"]


@pytest.mark.parametrize("model", [CLAUDE, GPT])
def test_streamed_tool_use_arrives_as_input_json_deltas(client, fake_upstream, model):
    fake_upstream.configure(structured={"city": "Oslo"}, chunks=3)
    with client.messages.stream(
        model=model,
        max_tokens=100,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    ) as stream:
        kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in stream]
        final = stream.get_final_message()
    assert ("content_block_delta", "input_json_delta") in kinds
    [call] = final.content
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"city": "Oslo"})
    assert final.stop_reason == "tool_use"


def test_count_tokens_is_an_upper_bound_without_an_upstream_call(client, fake_upstream):
    text = "How many tokens is this sentence, roughly?"
    counted = client.messages.count_tokens(
        model=CLAUDE, system="Be brief.", messages=[{"role": "user", "content": text}]
    )
    assert counted.input_tokens >= len(text.encode()) + len("Be brief.")
    longer = client.messages.count_tokens(model=GPT, messages=[{"role": "user", "content": text * 10}])
    assert longer.input_tokens >= 10 * len(text.encode())
    assert fake_upstream.requests == [] and UsageRecord.objects.count() == 0


def test_errors_are_the_sdks_own_classes(client, live_djllm, token, make_token, fake_upstream):
    anonymous = anthropic.Anthropic(base_url=live_djllm.url, api_key="djl_nope_nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anonymous.messages.create(model=GPT, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert denied.value.body["error"]["type"] == "authentication_error"

    no_llm = make_token(user=token[0].user, name="calendar only", scopes=["calendar"])[1]
    scoped = anthropic.Anthropic(base_url=live_djllm.url, api_key=no_llm, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as forbidden:
        scoped.messages.create(model=GPT, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert forbidden.value.body == {
        "type": "error",
        "error": {"type": "permission_error", "message": "This token lacks the `llm` scope."},
    }

    with pytest.raises(anthropic.BadRequestError) as unknown:
        client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert unknown.value.body["error"]["type"] == "invalid_request_error"
    assert "no-such-model" in unknown.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as missing:
        client.post("/v1/messages", body={"model": GPT, "messages": [{"role": "user", "content": "x"}]}, cast_to=dict)
    assert "max_tokens" in missing.value.body["error"]["message"]

    fake_upstream.fail_next("500", times=3)  # every retry djllm makes
    with pytest.raises(anthropic.InternalServerError) as failed:
        client.messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502 and failed.value.body["error"]["type"] == "api_error"

    row = token[0]
    row.rate_limit = "1/h"
    row.save()
    time.sleep(0.6)  # the server's token cache trusts a lookup for 0.5 s
    client.messages.create(model=GPT, max_tokens=5, messages=[{"role": "user", "content": "first"}])
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model=GPT, max_tokens=5, messages=[{"role": "user", "content": "second"}])
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    assert int(limited.value.response.headers["retry-after"]) >= 1
    # One row per request that got past authentication: the unknown model, the missing max_tokens (a 400 before
    # the gateway: none), the upstream failure, the first call and the rate-limited one.
    assert [(r.status, r.http_status) for r in records(4)] == [
        ("client_error", 400),
        ("upstream_error", 502),
        ("ok", 200),
        ("rate_limited", 429),
    ]


def test_upstream_failure_mid_stream_is_an_error_event(client, fake_upstream):
    fake_upstream.configure(reply="a b c d", chunks=4)
    fake_upstream.fail_next("stream_error", after_chunks=2)
    with pytest.raises(anthropic.APIStatusError) as failed:
        with client.messages.stream(model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "x"}]) as stream:
            list(stream.text_stream)
    assert failed.value.body["error"]["type"] == "overloaded_error"  # the upstream's own type
    [record] = records(1)
    assert (record.endpoint, record.status, record.stream) == ("messages", "upstream_error", True)


def test_the_default_model_follows_the_callers_preferences(client, token, fake_upstream):
    UserPreferences.objects.update_or_create(
        user=token[0].user, defaults={"default_provider": "anthropic", "default_model": CLAUDE}
    )
    fake_upstream.configure(reply="hi")
    message = client.messages.create(model="default", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert message.content[0].text == "hi"
    sent = fake_upstream.last_request
    assert (sent.provider, sent.body["model"]) == ("anthropic", CLAUDE)
    [record] = records(1)
    assert (record.provider, record.upstream_model, record.requested_model) == ("anthropic", CLAUDE, CLAUDE)


def test_x_api_key_authenticates_every_endpoint(live_djllm, token, fake_upstream):
    headers = {"x-api-key": token[1]}
    assert httpx.get(f"{live_djllm.url}/api/v1/usage", headers=headers).status_code == 200  # DRF
    answer = httpx.post(f"{live_djllm.url}/api/v1/webhook", headers=headers, json={"prompt": "hi"})  # fast path
    assert answer.status_code == 200
    assert httpx.get(f"{live_djllm.url}/v1/models", headers=headers).status_code == 200
    assert httpx.get(f"{live_djllm.url}/api/v1/usage", headers={"x-api-key": "djl_x_y"}).status_code == 401
    assert token_from_headers({"X-Api-Key": " djl_a_b "}) == "djl_a_b"
    assert token_from_headers({"Authorization": "Bearer djl_1", "X-Api-Key": "djl_2"}) == "djl_1"


def test_an_identical_request_at_temperature_0_is_answered_from_the_cache(client, fake_upstream):
    fake_upstream.configure(reply="cached answer", usage=FakeUsage(input_tokens=40, output_tokens=5))
    ask = dict(model=GPT, max_tokens=20, temperature=0, messages=[{"role": "user", "content": "same"}])
    first = client.messages.with_raw_response.create(**ask)
    again = client.messages.with_raw_response.create(**ask)
    assert (first.headers["x-djllm-cached"], again.headers["x-djllm-cached"]) == ("false", "true")
    assert again.parse().content[0].text == "cached answer" and again.parse().usage.input_tokens == 40
    assert len(fake_upstream.requests) == 1
    assert [(r.endpoint, r.status, r.cost_usd) for r in records(2)] == [
        ("messages", "ok", Decimal("0.000009")),
        ("messages", "cached", Decimal("0")),
    ]


@pytest.mark.parametrize(
    "content, param",
    [
        ([{"text": "no type"}], "messages.0.content.0.type"),
        ([{"type": "tool_result", "tool_use_id": "t1", "content": 7}], "messages.0.content.0.content"),
        ([{"type": "image", "source": {"type": "file"}}], "messages.0.content.0.source.type"),
    ],
)
def test_blocks_that_cannot_be_read_are_a_400_naming_them(client, fake_upstream, content, param):
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=GPT, max_tokens=5, messages=[{"role": "user", "content": content}])
    assert f"`{param}`" in bad.value.body["error"]["message"]
    assert fake_upstream.requests == []


def test_a_budget_that_cannot_hold_the_request_is_a_billing_error(client, token, fake_upstream):
    UserPreferences.objects.update_or_create(user=token[0].user, defaults={"monthly_budget_usd": Decimal("0.01")})
    with pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.create(model=CLAUDE, max_tokens=100_000, messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code == 402 and refused.value.body["error"]["type"] == "billing_error"
    assert fake_upstream.requests == []
    [record] = records(1)
    assert (record.endpoint, record.status, record.http_status) == ("messages", "budget_exceeded", 402)


def test_a_local_model_is_translated_like_an_openai_one(client, fake_upstream):
    fake_upstream.configure(reply="local hello", usage=FakeUsage(input_tokens=7, output_tokens=3))
    message = client.messages.create(
        model="local/llama3.2", max_tokens=20, system="Be kind.", messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.content[0].text == "local hello" and message.usage.input_tokens == 7
    sent = fake_upstream.last_request
    assert (sent.provider, sent.body["model"]) == ("openai", "llama3.2")  # the local server speaks OpenAI's protocol
    assert sent.body["messages"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    [record] = records(1)
    assert (record.endpoint, record.provider, record.input_tokens, record.output_tokens) == ("messages", "local", 7, 3)
