"""The fake upstream itself, driven by the real `openai` and `anthropic` SDKs (and raw httpx for the wire format)."""

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from bench.fake_upstream import FakeUpstream, Usage

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
TOOL = {
    "name": "create_event",
    "description": "Create a calendar event",
    "input_schema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
}
EVENT = {"title": "Standup", "start": "2026-01-05T09:00:00", "attendees": ["a@example.com"]}


@pytest.fixture
def oai(fake_upstream):
    with openai.OpenAI(base_url=fake_upstream.openai_base_url, api_key="sk-test", max_retries=0, timeout=5) as c:
        yield c


@pytest.fixture
def claude(fake_upstream):
    with anthropic.Anthropic(
        base_url=fake_upstream.anthropic_base_url, api_key="sk-ant-test", max_retries=0, timeout=5
    ) as c:
        yield c


def ask(provider, oai, claude, **kwargs):
    """One plain or streamed request through the real SDK of `provider`."""
    if provider == "openai":
        return oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kwargs)
    return claude.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES, **kwargs)


def sse_events(response: httpx.Response) -> list[tuple[str | None, str]]:
    """(event name, data) pairs of a raw SSE body."""
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, line[6:]))
            name = None
    return events


# --------------------------------------------------------------------------------------------- OpenAI


def test_openai_plain_reply_usage_and_recorded_request(fake_upstream, oai):
    fake_upstream.configure(
        reply="Paris.",
        usage=Usage(input_tokens=1200, output_tokens=300, cached_tokens=1024, reasoning_tokens=200),
        response_model="gpt-4o-mini-2024-07-18",
    )
    messages = [{"role": "system", "content": "Be brief."}, *MESSAGES]

    r = oai.chat.completions.create(model="gpt-4o-mini", messages=messages, temperature=0)

    assert r.choices[0].message.content == "Paris."
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-4o-mini-2024-07-18"
    assert r.usage.prompt_tokens == 1200
    assert r.usage.prompt_tokens_details.cached_tokens == 1024
    assert r.usage.completion_tokens == 300
    assert r.usage.completion_tokens_details.reasoning_tokens == 200
    assert r.usage.total_tokens == 1500
    rec = fake_upstream.last_request
    assert (rec.method, rec.path, rec.provider, rec.model, rec.stream) == (
        "POST",
        "/v1/chat/completions",
        "openai",
        "gpt-4o-mini",
        False,
    )
    assert rec.headers["authorization"] == "Bearer sk-test"
    assert rec.body["messages"] == messages
    assert rec.body["temperature"] == 0
    assert (rec.status, rec.response_id, rec.fault) == (200, r.id, None)


def test_default_reply_echoes_the_last_user_message_with_derived_usage(fake_upstream, oai, claude):
    r = ask("openai", oai, claude)
    m = ask("anthropic", oai, claude)

    question = MESSAGES[0]["content"]
    assert r.choices[0].message.content == m.content[0].text == f"Echo: {question}"
    assert r.usage.prompt_tokens == m.usage.input_tokens == len(question) // 4
    assert r.usage.completion_tokens == m.usage.output_tokens == len(f"Echo: {question}") // 4
    assert r.id != m.id


def test_openai_stream_without_include_usage_has_no_usage_chunk(fake_upstream, oai):
    fake_upstream.configure(reply="The capital is Paris.", chunks=3)

    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "The capital is Paris."
    assert [c.choices[0].delta.role for c in chunks][0] == "assistant"
    assert sum(1 for c in chunks if c.choices[0].delta.content) == 3
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert fake_upstream.last_request.stream is True
    assert "stream_options" not in fake_upstream.last_request.body


def test_openai_stream_include_usage_ends_with_a_usage_chunk(fake_upstream, oai):
    fake_upstream.configure(reply="Paris.", usage={"input_tokens": 40, "output_tokens": 3, "cached_tokens": 32})

    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    *content, last = chunks
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (40, 3, 43)
    assert last.usage.prompt_tokens_details.cached_tokens == 32
    assert all(c.usage is None and c.choices for c in content)
    assert content[-1].choices[0].finish_reason == "stop"
    assert fake_upstream.last_request.body["stream_options"] == {"include_usage": True}


def test_openai_stream_wire_format(fake_upstream):
    fake_upstream.configure(reply="abcdef", chunks=2)
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}

    with httpx.stream("POST", fake_upstream.openai_base_url + "/chat/completions", json=body, timeout=5) as r:
        events = sse_events(r)

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["transfer-encoding"] == "chunked"
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert [c["object"] for c in chunks] == ["chat.completion.chunk"] * 5
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:3]] == ["", "abc", "def"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])


def test_openai_structured_output_returns_the_configured_json(fake_upstream, oai):
    fake_upstream.configure(structured=EVENT)
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "event", "strict": True, "schema": {"type": "object", "properties": {}}},
    }

    r = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, response_format=response_format)
    streamed = oai.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, response_format=response_format, stream=True
    )

    assert json.loads(r.choices[0].message.content) == EVENT
    assert json.loads("".join(c.choices[0].delta.content or "" for c in streamed)) == EVENT
    assert fake_upstream.last_request.body["response_format"] == response_format


def test_openai_forced_function_call(fake_upstream, oai):
    fake_upstream.configure(structured=EVENT)
    tools = [{"type": "function", "function": {"name": "create_event", "parameters": TOOL["input_schema"]}}]
    choice = {"type": "function", "function": {"name": "create_event"}}

    r = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools, tool_choice=choice)
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, tools=tools, tool_choice=choice, stream=True
        )
    )

    call = r.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == ("create_event", EVENT)
    assert r.choices[0].finish_reason == "tool_calls"
    streamed_args = "".join(tc.function.arguments or "" for c in chunks for tc in (c.choices[0].delta.tool_calls or []))
    assert json.loads(streamed_args) == EVENT
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_models_list(fake_upstream, oai):
    fake_upstream.configure(models=["gpt-4o-mini", "claude-haiku-4-5"])

    assert [m.id for m in oai.models.list()] == ["gpt-4o-mini", "claude-haiku-4-5"]


def test_openai_request_validation(fake_upstream, oai):
    with pytest.raises(openai.BadRequestError) as exc:
        oai.chat.completions.create(model="gpt-4o-mini", messages=[])

    assert exc.value.body["type"] == "invalid_request_error"
    assert fake_upstream.last_request.status == 400


# --------------------------------------------------------------------------------------------- Anthropic


def test_anthropic_plain_reply_usage_and_recorded_request(fake_upstream, claude):
    fake_upstream.configure(
        reply="Paris.", usage=Usage(input_tokens=50, output_tokens=7, cached_tokens=2000, cache_write_tokens=300)
    )

    m = claude.messages.create(model="claude-haiku-4-5", max_tokens=100, system="Be brief.", messages=MESSAGES)

    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == "Paris."
    assert (m.stop_reason, m.model, m.role) == ("end_turn", "claude-haiku-4-5", "assistant")
    assert m.usage.input_tokens == 50
    assert m.usage.cache_read_input_tokens == 2000
    assert m.usage.cache_creation_input_tokens == 300
    assert m.usage.output_tokens == 7
    rec = fake_upstream.last_request
    assert (rec.path, rec.provider, rec.response_id) == ("/v1/messages", "anthropic", m.id)
    assert rec.headers["x-api-key"] == "sk-ant-test"
    assert rec.headers["anthropic-version"]
    assert rec.body["system"] == "Be brief."
    assert rec.body["messages"] == MESSAGES


def test_anthropic_stream_has_the_real_event_sequence(fake_upstream):
    fake_upstream.configure(
        reply="The capital is Paris.",
        chunks=3,
        usage=Usage(input_tokens=50, output_tokens=7, cached_tokens=2000, cache_write_tokens=300),
    )
    body = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": MESSAGES, "stream": True}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}

    with httpx.stream("POST", fake_upstream.url + "/v1/messages", json=body, headers=headers, timeout=5) as r:
        events = sse_events(r)

    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [json.loads(d) for _, d in events]
    assert [d["type"] for d in data] == names
    start_usage = data[0]["message"]["usage"]
    assert (start_usage["input_tokens"], start_usage["output_tokens"]) == (50, 1)
    assert (start_usage["cache_read_input_tokens"], start_usage["cache_creation_input_tokens"]) == (2000, 300)
    assert "".join(d["delta"]["text"] for d in data[3:6]) == "The capital is Paris."
    assert data[7]["delta"]["stop_reason"] == "end_turn"
    assert data[7]["usage"] == {"output_tokens": 7}


def test_anthropic_stream_through_the_sdk(fake_upstream, claude):
    fake_upstream.configure(reply="The capital is Paris.", usage={"input_tokens": 50, "output_tokens": 7})

    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == final.content[0].text == "The capital is Paris."
    assert (final.usage.input_tokens, final.usage.output_tokens) == (50, 7)
    assert final.stop_reason == "end_turn"
    assert fake_upstream.last_request.stream is True


def test_anthropic_full_delta_usage_repeats_cumulative_counts(fake_upstream, claude):
    fake_upstream.configure(
        anthropic_delta_usage="full", usage=Usage(input_tokens=50, output_tokens=7, cached_tokens=20)
    )

    events = list(claude.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES, stream=True))

    delta = next(e for e in events if e.type == "message_delta")
    assert (delta.usage.input_tokens, delta.usage.cache_read_input_tokens, delta.usage.output_tokens) == (50, 20, 7)


def test_anthropic_forced_tool_use_plain_and_streamed(fake_upstream, claude):
    fake_upstream.configure(structured=EVENT)
    kwargs = dict(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=MESSAGES,
        tools=[TOOL],
        tool_choice={"type": "tool", "name": "create_event"},
    )

    m = claude.messages.create(**kwargs)
    events = list(claude.messages.create(**kwargs, stream=True))
    with claude.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()

    assert [b.type for b in m.content] == ["tool_use"]
    assert (m.content[0].name, m.content[0].input, m.stop_reason) == ("create_event", EVENT, "tool_use")
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert {d.type for d in deltas} == {"input_json_delta"}
    assert json.loads("".join(d.partial_json for d in deltas)) == EVENT
    assert (final.content[0].type, final.content[0].input, final.stop_reason) == ("tool_use", EVENT, "tool_use")
    assert fake_upstream.last_request.body["tool_choice"] == {"type": "tool", "name": "create_event"}


def test_finish_reason_length(fake_upstream, oai, claude):
    fake_upstream.configure(finish_reason="length")

    assert ask("openai", oai, claude).choices[0].finish_reason == "length"
    assert ask("anthropic", oai, claude).stop_reason == "max_tokens"


def test_anthropic_request_validation(fake_upstream, claude):
    with pytest.raises(anthropic.BadRequestError) as exc:
        claude.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "system", "content": "x"}, *MESSAGES]
        )
    no_version = httpx.post(
        fake_upstream.url + "/v1/messages",
        json={"model": "claude-haiku-4-5", "max_tokens": 10, "messages": MESSAGES},
        headers={"x-api-key": "k"},
    )
    no_max_tokens = httpx.post(
        fake_upstream.url + "/v1/messages",
        json={"model": "claude-haiku-4-5", "messages": MESSAGES},
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )

    assert exc.value.body["error"]["type"] == "invalid_request_error"
    assert "system" in exc.value.body["error"]["message"]
    assert no_version.status_code == no_max_tokens.status_code == 400
    assert no_version.json()["error"]["message"] == "anthropic-version: header is required"
    assert no_max_tokens.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
        "request_id": no_max_tokens.json()["request_id"],
    }


def test_anthropic_models_list(fake_upstream, claude):
    fake_upstream.configure(models=["claude-haiku-4-5", "claude-sonnet-4-5"])

    assert [m.id for m in claude.models.list()] == ["claude-haiku-4-5", "claude-sonnet-4-5"]


# --------------------------------------------------------------------------------------------- keys


def test_api_key_is_checked_in_each_providers_shape(fake_upstream):
    fake_upstream.configure(api_key="right-key")
    good_oai = openai.OpenAI(base_url=fake_upstream.openai_base_url, api_key="right-key", max_retries=0)
    bad_oai = openai.OpenAI(base_url=fake_upstream.openai_base_url, api_key="wrong", max_retries=0)
    good_claude = anthropic.Anthropic(base_url=fake_upstream.anthropic_base_url, api_key="right-key", max_retries=0)
    bad_claude = anthropic.Anthropic(base_url=fake_upstream.anthropic_base_url, api_key="wrong", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as oai_exc:
        ask("openai", bad_oai, bad_claude)
    with pytest.raises(anthropic.AuthenticationError) as claude_exc:
        ask("anthropic", bad_oai, bad_claude)

    assert oai_exc.value.code == "invalid_api_key"
    assert oai_exc.value.body["type"] == "invalid_request_error"
    assert claude_exc.value.body["error"]["type"] == "authentication_error"
    assert ask("openai", good_oai, good_claude).choices[0].message.content
    assert ask("anthropic", good_oai, good_claude).content[0].text
    assert [r.status for r in fake_upstream.requests] == [401, 401, 200, 200]


# --------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_429_carries_retry_after_and_is_consumed(fake_upstream, oai, claude, provider):
    fake_upstream.fail_next("429", retry_after=1)
    sdk = openai if provider == "openai" else anthropic

    with pytest.raises(sdk.RateLimitError) as exc:
        ask(provider, oai, claude)
    after = ask(provider, oai, claude)

    assert exc.value.status_code == 429
    assert exc.value.response.headers["retry-after"] == "1"
    if provider == "openai":
        assert exc.value.code == "rate_limit_exceeded"
        assert after.choices[0].message.content
    else:
        assert exc.value.body["error"]["type"] == "rate_limit_error"
        assert after.content[0].text
    assert [r.fault for r in fake_upstream.requests] == ["429", None]


def test_faults_queue_by_times_provider_and_model(fake_upstream, oai, claude):
    fake_upstream.fail_next("500", times=2, provider="openai")
    fake_upstream.fail_next("503", model="claude-haiku-4-5")

    with pytest.raises(anthropic.InternalServerError) as claude_exc:
        ask("anthropic", oai, claude)
    second_claude = ask("anthropic", oai, claude)
    oai_errors = []
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as exc:
            ask("openai", oai, claude)
        oai_errors.append(exc.value)
    third_oai = ask("openai", oai, claude)

    assert claude_exc.value.status_code == 503
    assert second_claude.content[0].text
    assert [e.status_code for e in oai_errors] == [500, 500]
    assert oai_errors[0].body["type"] == "server_error"
    assert third_oai.choices[0].message.content
    assert [(r.provider, r.fault) for r in fake_upstream.requests] == [
        ("anthropic", "503"),
        ("anthropic", None),
        ("openai", "500"),
        ("openai", "500"),
        ("openai", None),
    ]
    assert fake_upstream.pending_faults == []


def test_fault_until_cleared(fake_upstream, oai, claude):
    fake_upstream.fail_next("500", times=None)

    for _ in range(3):
        with pytest.raises(openai.InternalServerError):
            ask("openai", oai, claude)
    fake_upstream.clear_faults()

    assert ask("openai", oai, claude).choices[0].message.content


def test_529_is_anthropic_overloaded(fake_upstream, oai, claude):
    fake_upstream.fail_next("529", times=2)

    with pytest.raises(anthropic.APIStatusError) as claude_exc:
        ask("anthropic", oai, claude)
    with pytest.raises(openai.InternalServerError) as oai_exc:
        ask("openai", oai, claude)

    assert claude_exc.value.status_code == 529
    assert type(claude_exc.value).__name__ == "OverloadedError"  # anthropic 0.75 doesn't export it at top level
    assert claude_exc.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert oai_exc.value.status_code == 529


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_timeout_holds_one_request_without_blocking_others(fake_upstream, provider):
    fake_upstream.fail_next("timeout", hold_s=10)
    if provider == "openai":
        client = openai.AsyncOpenAI(base_url=fake_upstream.openai_base_url, api_key="k", max_retries=0, timeout=1)

        def call():
            return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    else:
        client = anthropic.AsyncAnthropic(
            base_url=fake_upstream.anthropic_base_url, api_key="k", max_retries=0, timeout=1
        )

        def call():
            return client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)

    async with client:
        held = asyncio.ensure_future(call())
        await asyncio.to_thread(fake_upstream.wait_for_requests, 1)
        other = await call()  # answered while the first one is held
        with pytest.raises((openai.APITimeoutError, anthropic.APITimeoutError)):
            await held

    assert other.id
    assert [r.fault for r in fake_upstream.requests] == ["timeout", None]
    fake_upstream.wait_until(lambda: fake_upstream.requests[0].disconnected)


def test_timeout_mid_stream(fake_upstream, oai):
    fake_upstream.configure(reply="The capital is Paris.", chunks=4)
    fake_upstream.fail_next("timeout", after_chunks=1, hold_s=10)
    received = []

    with pytest.raises((httpx.ReadTimeout, openai.APITimeoutError)):
        stream = oai.with_options(timeout=0.5).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)

    assert received == ["", "The ca"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
def test_reset_is_a_connection_error(fake_upstream, oai, claude, provider, stream):
    fake_upstream.fail_next("reset")
    sdk = openai if provider == "openai" else anthropic

    with pytest.raises(sdk.APIConnectionError) as exc:
        ask(provider, oai, claude, stream=stream)

    assert isinstance(exc.value.__cause__, httpx.TransportError)
    assert "reset" in str(exc.value.__cause__).lower()
    assert fake_upstream.last_request.fault == "reset"
    assert fake_upstream.last_request.status is None
    assert ask(provider, oai, claude)  # the client recovers on a new connection


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_disconnect_without_response_is_a_connection_error(fake_upstream, oai, claude, provider):
    fake_upstream.fail_next("disconnect")
    sdk = openai if provider == "openai" else anthropic

    with pytest.raises(sdk.APIConnectionError) as exc:
        ask(provider, oai, claude)

    assert isinstance(exc.value.__cause__, httpx.RemoteProtocolError)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_malformed_json(fake_upstream, oai, claude, provider):
    fake_upstream.fail_next("malformed", times=2)

    with pytest.raises(json.JSONDecodeError):
        ask(provider, oai, claude)
    received = []
    with pytest.raises(json.JSONDecodeError):
        for event in ask(provider, oai, claude, stream=True):
            received.append(event)

    assert len(received) >= 2  # the broken line comes after the preamble and the first delta
    assert [r.status for r in fake_upstream.requests] == [200, 200]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stream_cut_raises_mid_iteration(fake_upstream, oai, claude, provider):
    fake_upstream.configure(reply="The capital is Paris.", chunks=4)
    fake_upstream.fail_next("stream_cut", after_chunks=2)
    text = []

    with pytest.raises((httpx.RemoteProtocolError, openai.APIError, anthropic.APIError)):
        for event in ask(provider, oai, claude, stream=True):
            if provider == "openai":
                text.append(event.choices[0].delta.content or "")
            elif event.type == "content_block_delta":
                text.append(event.delta.text)

    assert "".join(text) == "The capital "  # 2 of 4 deltas of 6 characters
    assert fake_upstream.last_request.fault == "stream_cut"


def test_stream_cut_on_a_plain_request(fake_upstream, oai, claude):
    fake_upstream.fail_next("stream_cut")

    with pytest.raises(openai.APIConnectionError) as exc:
        ask("openai", oai, claude)

    assert isinstance(exc.value.__cause__, httpx.RemoteProtocolError)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_stream_error_event(fake_upstream, oai, claude, provider):
    fake_upstream.fail_next("stream_error", after_chunks=1)
    sdk = openai if provider == "openai" else anthropic
    events = []

    with pytest.raises(sdk.APIError) as exc:
        for event in ask(provider, oai, claude, stream=True):
            events.append(event)

    assert events
    if provider == "anthropic":
        assert exc.value.body["error"]["type"] == "overloaded_error"
    else:
        assert exc.value.body["type"] == "server_error"


def test_client_disconnect_mid_stream_is_recorded(fake_upstream, oai):
    fake_upstream.configure(chunks=5, chunk_delay_ms=200)

    stream = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    first = next(iter(stream))
    stream.close()

    assert first.choices[0].delta.role == "assistant"
    fake_upstream.wait_until(lambda: fake_upstream.last_request.disconnected)


# --------------------------------------------------------------------------------------------- transport


def test_keep_alive_reuses_one_connection(fake_upstream, oai):
    for _ in range(5):
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    assert fake_upstream.stats["total"] == 6
    assert fake_upstream.stats["connections"] == 1


async def test_100_concurrent_requests_with_latency_all_finish(fake_upstream):
    fake_upstream.configure(latency_ms=200)
    async with openai.AsyncOpenAI(
        base_url=fake_upstream.openai_base_url, api_key="k", max_retries=0, timeout=5
    ) as client:

        async def one(i):
            started = time.monotonic()
            r = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": f"question {i}"}]
            )
            return r, time.monotonic() - started

        results = await asyncio.gather(*(one(i) for i in range(100)))

    # Served one after another they would need 20 s: most would hit the 5 s client timeout.
    assert sorted(r.choices[0].message.content for r, _ in results) == sorted(f"Echo: question {i}" for i in range(100))
    assert all(elapsed >= 0.2 for _, elapsed in results)  # the latency is applied to each
    assert fake_upstream.stats["max_in_flight"] > 10


def test_sync_client_shared_by_threads_is_served_concurrently(fake_upstream, oai):
    fake_upstream.configure(latency_ms=300)
    errors, results = [], []

    def worker():
        try:
            results.append(oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert errors == [] and len(results) == 20
    assert fake_upstream.stats["max_in_flight"] > 1


def test_controller_rejects_unknown_settings(fake_upstream):
    with pytest.raises(TypeError):
        fake_upstream.configure(replies="x")
    with pytest.raises(ValueError):
        fake_upstream.fail_next("teapot")
    with pytest.raises(ValueError):
        fake_upstream.fail_next("500", provider="gemini")


def test_unknown_path_is_a_404_and_recorded(fake_upstream, oai):
    with pytest.raises(openai.NotFoundError):
        oai.embeddings.create(model="text-embedding-3-small", input="x")

    assert fake_upstream.last_request.path == "/v1/embeddings"
    assert fake_upstream.last_request.status == 404


def test_separate_instance_start_stop_and_reset():
    fake = FakeUpstream(reply="fixed").start()
    try:
        fake.configure(reply="changed")
        fake.fail_next("500")
        with openai.OpenAI(base_url=fake.openai_base_url, api_key="k", max_retries=0) as c:
            fake.reset()
            r = c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert r.choices[0].message.content == "fixed"
        assert len(fake.requests) == 1
    finally:
        fake.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.url + "/v1/models", timeout=2)


def test_standalone_command_line_server():
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_upstream", "--host", "127.0.0.1", "--port", "0", "--latency-ms", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # the server prints this once it accepts connections
        match = re.fullmatch(r"fake upstream listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = match.group(1)
        with openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=5) as c:
            first = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            configured = httpx.post(url + "/_fake/config", json={"reply": "Bonjour", "chunks": 2}, timeout=5)
            streamed = "".join(
                ch.choices[0].delta.content or ""
                for ch in c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            )
            httpx.post(url + "/_fake/fail_next", json={"kind": "reset"}, timeout=5).raise_for_status()
            with pytest.raises(openai.APIConnectionError):
                c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stats = httpx.get(url + "/_fake/stats", timeout=5).json()
        bad = httpx.post(url + "/_fake/config", json={"nope": 1}, timeout=5)
    finally:
        proc.terminate()
        proc.wait(10)

    assert first.choices[0].message.content == f"Echo: {MESSAGES[0]['content']}"
    assert configured.status_code == 200
    assert streamed == "Bonjour"
    assert stats["total"] == 3
    assert bad.status_code == 400
    assert proc.returncode == 0
