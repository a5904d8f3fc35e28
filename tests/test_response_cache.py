"""The response cache keeps whole answers (tool calls, finish reason, refusal), never crosses users or routes unless
told to, and is skipped when its backend is down."""

import json
from decimal import Decimal

import openai
import pytest
from django.test import Client

from accounts import services as account_services
from bench.fake_upstream import Usage as FakeUsage
from llm import routing
from llm.models import ModelRoute, UsageRecord
from tests.factories import UserFactory
from tests.live import close_server_thread_connections

CHAT = "/v1/chat/completions"
TOOLS = [{"type": "function", "function": {"name": "create_event", "parameters": {"type": "object"}}}]
CHOICE = {"type": "function", "function": {"name": "create_event"}}
EVENT = {"title": "Team lunch", "start": "2026-12-08T13:00:00"}


# Streams under Django's test client run on the process's stream loop, beside the test's own thread: the tests
# commit their rows, and the hot path writes on its database thread, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(token, gateway_settings, prices, settings):
    settings.DB_THREAD_ENABLED = True
    yield Client(HTTP_AUTHORIZATION=f"Bearer {token[1]}")
    close_server_thread_connections()


def chat(client, model="gpt-4o-mini", content="Hello there", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], "temperature": 0, **extra}
    return client.post(CHAT, body, content_type="application/json")


def sse_events(response) -> list[dict]:
    raw = b"".join(response.streaming_content).decode()
    lines = [line[len("data: ") :] for line in raw.split("\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]", raw
    return [json.loads(line) for line in lines[:-1]]


def streamed_tool_calls(events: list[dict]) -> list[dict]:
    """What an OpenAI client assembles from the deltas: whole calls by index."""
    calls: dict[int, dict] = {}
    for event in events:
        for delta in (event["choices"][0]["delta"].get("tool_calls") or []) if event["choices"] else []:
            call = calls.setdefault(delta["index"], {"id": None, "name": None, "arguments": ""})
            call["id"] = delta.get("id") or call["id"]
            call["name"] = (delta.get("function") or {}).get("name") or call["name"]
            call["arguments"] += (delta.get("function") or {}).get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def statuses() -> list[str]:
    return list(UsageRecord.objects.order_by("id").values_list("status", flat=True))


def test_streamed_tool_calls_are_cached_whole_and_replayed_plain_and_streamed(client, fake_upstream):
    fake_upstream.configure(structured=EVENT, chunks=5)
    first = sse_events(chat(client, tools=TOOLS, tool_choice=CHOICE, stream=True))
    [call] = streamed_tool_calls(first)
    assert call["name"] == "create_event" and json.loads(call["arguments"]) == EVENT

    replay = chat(client, tools=TOOLS, tool_choice=CHOICE, stream=True)
    assert replay["X-Djllm-Cached"] == "true"
    events = sse_events(replay)
    assert streamed_tool_calls(events) == [call]  # same id, name and arguments as the upstream sent
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "tool_calls"

    plain = chat(client, tools=TOOLS, tool_choice=CHOICE)
    assert plain["X-Djllm-Cached"] == "true"
    body = plain.json()
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    [whole] = body["choices"][0]["message"]["tool_calls"]
    assert whole == {
        "id": call["id"],
        "type": "function",
        "function": {"name": "create_event", "arguments": call["arguments"]},
    }
    assert len(fake_upstream.requests) == 1
    assert statuses() == ["ok", "cached", "cached"]


def test_streamed_tool_calls_that_cannot_be_put_together_are_not_cached(client, fake_upstream, monkeypatch):
    """A tool-call delta without an index cannot be assembled: the answer is served but not cached."""
    from llm.providers import openai_provider

    real = openai_provider._without_none

    def drop_index(value):
        value = real(value)
        if isinstance(value, dict) and "function" in value:
            value.pop("index", None)
        return value

    monkeypatch.setattr(openai_provider, "_without_none", drop_index)
    fake_upstream.configure(structured=EVENT)
    sse_events(chat(client, tools=TOOLS, tool_choice=CHOICE, stream=True))
    again = chat(client, tools=TOOLS, tool_choice=CHOICE, stream=True)
    assert again["X-Djllm-Cached"] == "false"
    sse_events(again)
    assert len(fake_upstream.requests) == 2
    assert statuses() == ["ok", "ok"]


def test_refusal_reaches_the_client_and_survives_the_cache(client, fake_upstream):
    fake_upstream.configure(refusal="I can't help with that.", chunks=3)
    plain = chat(client, content="something forbidden").json()
    assert plain["choices"][0]["message"]["refusal"] == "I can't help with that."
    assert plain["choices"][0]["message"]["content"] == ""

    cached = chat(client, content="something forbidden")
    assert cached["X-Djllm-Cached"] == "true"
    assert cached.json()["choices"][0]["message"]["refusal"] == "I can't help with that."

    streamed = sse_events(chat(client, content="another forbidden thing", stream=True))
    assert "".join(e["choices"][0]["delta"].get("refusal") or "" for e in streamed if e["choices"]) == (
        "I can't help with that."
    )
    replay = chat(client, content="another forbidden thing")
    assert replay["X-Djllm-Cached"] == "true"
    assert replay.json()["choices"][0]["message"]["refusal"] == "I can't help with that."
    assert len(fake_upstream.requests) == 2


def test_cache_is_per_user_by_default(client, gateway_settings, fake_upstream):
    fake_upstream.configure(reply="Paris", usage=FakeUsage(input_tokens=10, output_tokens=2))
    assert chat(client, content="Capital of France?")["X-Djllm-Cached"] == "false"
    assert chat(client, content="Capital of France?")["X-Djllm-Cached"] == "true"

    _, other_plain = account_services.api_token_create(user=UserFactory(username="bob"), name="bob")
    other = Client(HTTP_AUTHORIZATION=f"Bearer {other_plain}")
    response = chat(other, content="Capital of France?")
    assert response["X-Djllm-Cached"] == "false"
    assert response.json()["choices"][0]["message"]["content"] == "Paris"
    assert len(fake_upstream.requests) == 2
    bob = UsageRecord.objects.get(user__username="bob")
    assert (bob.status, bob.cost_usd > 0) == ("ok", True)


def test_global_scope_shares_answers_between_users(client, settings, fake_upstream):
    settings.RESPONSE_CACHE_SCOPE = "global"
    fake_upstream.configure(reply="Paris", usage=FakeUsage(input_tokens=10, output_tokens=2))
    chat(client, content="Capital of France?")
    _, other_plain = account_services.api_token_create(user=UserFactory(username="bob"), name="bob")
    response = chat(Client(HTTP_AUTHORIZATION=f"Bearer {other_plain}"), content="Capital of France?")
    assert response["X-Djllm-Cached"] == "true"
    bob = UsageRecord.objects.get(user__username="bob")
    assert (bob.status, bob.cost_usd) == ("cached", Decimal("0"))
    assert len(fake_upstream.requests) == 1


def test_two_routes_to_one_model_never_share_answers(client, gateway_settings, fake_upstream):
    base = gateway_settings.openai_base_url
    for alias, key in (("team-a", "sk-route-a-000000000000"), ("team-b", "sk-route-b-000000000000")):
        ModelRoute.objects.create(
            alias=alias, provider="openai", upstream_model="gpt-4o-mini", base_url=base, api_key=key
        )
    routing.routes_changed()
    fake_upstream.configure(reply="Answer")

    assert chat(client, model="team-a")["X-Djllm-Cached"] == "false"
    assert chat(client, model="team-a")["X-Djllm-Cached"] == "true"
    assert chat(client, model="team-b")["X-Djllm-Cached"] == "false"
    sent_keys = [r.headers["authorization"] for r in fake_upstream.requests]
    assert sent_keys == ["Bearer sk-route-a-000000000000", "Bearer sk-route-b-000000000000"]


def test_cache_backend_down_answers_from_upstream(client, settings, fake_upstream, caplog):
    """Redis unreachable: the cache is skipped (a miss, no store), the answer and its record are as usual."""
    settings.RATE_LIMIT_ENABLED = False  # the limiter's own behaviour without Redis is tested with the limiter
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    fake_upstream.configure(reply="Still here")
    for _ in range(2):
        response = chat(client)
        assert response.status_code == 200, response.content
        assert response["X-Djllm-Cached"] == "false"
        assert response.json()["choices"][0]["message"]["content"] == "Still here"
    assert statuses() == ["ok", "ok"]
    assert len(fake_upstream.requests) == 2
    assert "Response cache unavailable" in caplog.text


def test_sdk_streamed_tool_call_replayed_from_cache(live_djllm, token, prices, fake_upstream):
    """The unmodified OpenAI SDK sees the same tool call from the cache as from the upstream."""
    sdk = openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key=token[1], max_retries=0, timeout=10)
    fake_upstream.configure(structured=EVENT)
    kwargs = dict(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "team lunch next Tuesday at 1"}],
        tools=TOOLS,
        tool_choice=CHOICE,
        temperature=0,
    )
    first = list(sdk.chat.completions.create(stream=True, **kwargs))
    again = sdk.chat.completions.with_raw_response.create(**kwargs)
    assert again.headers["x-djllm-cached"] == "true"
    [call] = again.parse().choices[0].message.tool_calls
    deltas = [tc for c in first if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert call.id == deltas[0].id and call.function.name == "create_event"
    assert json.loads(call.function.arguments) == EVENT
    assert again.parse().choices[0].finish_reason == "tool_calls"
    assert len(fake_upstream.requests) == 1


def test_an_answer_from_a_fallback_route_is_not_cached_as_the_requested_routes(client, gateway_settings, fake_upstream):
    backup = ModelRoute.objects.create(alias="backup", provider="anthropic", upstream_model="claude-haiku-4-5")
    ModelRoute.objects.create(alias="smart", provider="openai", upstream_model="gpt-4o", fallback=backup)
    routing.routes_changed()
    fake_upstream.fail_next("500", times=3, provider="openai")
    assert chat(client, model="smart")["X-Djllm-Cached"] == "false"  # answered by the fallback
    again = chat(client, model="smart")
    assert again["X-Djllm-Cached"] == "false"  # the primary is asked again, and its answer is the one kept
    assert chat(client, model="smart")["X-Djllm-Cached"] == "true"
    assert [r.provider for r in fake_upstream.requests] == ["openai"] * 3 + ["anthropic", "openai"]
