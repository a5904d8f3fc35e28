"""`POST /v1/responses` on a local (OpenAI-compatible) route, driven by the unmodified `openai` SDK against a live
djllm and the fake upstream acting as the local server: a route whose `responses_api` flag is on is sent to the
server's own `/v1/responses` (statelessly: the whole conversation, `store` false), one with the flag off through
Chat Completions; a fallback route decides for itself. The answer, its usage and the usage row are exact either way."""

import json
import time
from decimal import Decimal

import openai
import pytest

from bench.fake_upstream import Usage as FakeUsage
from llm import pricing, routing
from llm.models import ModelPrice, ModelRoute, StoredResponse, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

# The fake upstream sends these counts in the wire format of the endpoint it is called on (Responses or chat).
USAGE = FakeUsage(input_tokens=1000, output_tokens=200, cached_tokens=400, reasoning_tokens=50)
COST = Decimal("0.000160")  # 600 x $0.10 + 400 x $0.05 (cached) + 200 x $0.40, per million tokens
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ENDPOINT = {True: "/v1/responses", False: "/v1/chat/completions"}


@pytest.fixture
def client(live_djllm, token, prices):
    for model in ("qwen3", "qwen3-small"):
        ModelPrice.objects.create(
            provider="local",
            model=model,
            input_per_mtok=Decimal("0.10"),
            output_per_mtok=Decimal("0.40"),
            cached_input_per_mtok=Decimal("0.05"),
            effective_from="2025-01-01",
        )
    pricing.prices_changed()
    return openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key=token[1], max_retries=0, timeout=10)


def local_route(alias: str, *, responses_api: bool, model: str = "qwen3", fallback=None) -> ModelRoute:
    """A local route on LOCAL_LLM_BASE_URL (the fake upstream), as an administrator would add it."""
    route = ModelRoute(
        alias=alias, provider="local", upstream_model=model, responses_api=responses_api, fallback=fallback
    )
    route.full_clean()
    route.save()
    routing.routes_changed()
    return route


def records(n: int, timeout: float = 5.0) -> list[UsageRecord]:
    """A stream's usage row is written as it ends, which may be just after the client saw the end."""
    deadline = time.monotonic() + timeout
    while UsageRecord.objects.count() < n and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # and no second row follows
    return list(UsageRecord.objects.order_by("id"))


def assert_usage(usage) -> None:
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (1000, 400)
    assert (usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (200, 50)
    assert usage.total_tokens == 1200


def assert_record(record: UsageRecord, *, stream: bool, model: str = "qwen3") -> None:
    assert (record.endpoint, record.status, record.stream) == ("responses", "ok", stream)
    assert (record.provider, record.upstream_model) == ("local", model)
    assert (record.input_tokens, record.cached_input_tokens) == (1000, 400)
    assert (record.output_tokens, record.reasoning_tokens) == (200, 50)
    assert record.cost_usd == COST and record.usage_estimated is False and record.priced is True


@pytest.mark.parametrize("responses_api", [True, False], ids=["flag-on", "flag-off"])
def test_a_plain_request_follows_the_routes_flag(client, fake_upstream, responses_api):
    local_route("box", responses_api=responses_api)
    fake_upstream.configure(reply="Bonjour !", usage=USAGE)
    response = client.responses.create(
        model="box",
        instructions="Answer in French.",
        input="Hello",
        max_output_tokens=64,
        temperature=0.5,
        metadata={"ticket": "42"},
    )
    assert response.status == "completed" and response.id.startswith("resp_")
    assert response.output_text == "Bonjour !" and response.metadata == {"ticket": "42"}
    assert_usage(response.usage)

    [sent] = fake_upstream.requests
    assert (sent.path, sent.stream, sent.body["model"]) == (ENDPOINT[responses_api], False, "qwen3")
    assert sent.body["temperature"] == 0.5 and "metadata" not in sent.body  # djllm keeps it with the response
    if responses_api:  # the Responses request as the client sent it, without djllm's own fields
        assert sent.body["input"] == [{"type": "message", "role": "user", "content": "Hello"}]
        assert (sent.body["instructions"], sent.body["max_output_tokens"]) == ("Answer in French.", 64)
        assert sent.body["store"] is False and "previous_response_id" not in sent.body
    else:
        assert sent.body["messages"] == [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ]
        assert sent.body["max_tokens"] == 64 and "input" not in sent.body
    [record] = records(1)
    assert_record(record, stream=False)
    assert record.requested_model == "box"
    assert StoredResponse.objects.get(id=response.id).body["output"][0]["content"][0]["text"] == "Bonjour !"


@pytest.mark.parametrize("responses_api", [True, False], ids=["flag-on", "flag-off"])
def test_a_streamed_request_follows_the_routes_flag(client, fake_upstream, responses_api):
    local_route("box", responses_api=responses_api)
    fake_upstream.configure(reply="one two three four", chunks=4, usage=USAGE)
    with client.responses.stream(model="box", input="Count to four") as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == "one two three four" and len(deltas) == 4  # relayed chunk by chunk
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.output_text == "one two three four" and final.status == "completed"
    assert_usage(final.usage)

    [sent] = fake_upstream.requests
    assert (sent.path, sent.stream, sent.body["model"]) == (ENDPOINT[responses_api], True, "qwen3")
    if responses_api:
        assert sent.body["store"] is False and "stream_options" not in sent.body
    else:
        assert sent.body["stream_options"] == {"include_usage": True}  # what an exact usage row needs
    [record] = records(1)
    assert_record(record, stream=True)
    assert StoredResponse.objects.filter(id=final.id).exists()


def test_flag_on_continues_a_stored_response_statelessly(client, fake_upstream):
    local_route("box", responses_api=True)
    fake_upstream.configure(reply="Hi Ada.")
    first = client.responses.create(model="box", instructions="Be brief.", input="I am Ada.")
    fake_upstream.configure(reply="You are Ada.")
    second = client.responses.create(model="box", previous_response_id=first.id, input="Who am I?")
    assert second.output_text == "You are Ada." and second.previous_response_id == first.id
    sent = fake_upstream.last_request
    assert sent.path == "/v1/responses"
    assert "previous_response_id" not in sent.body and sent.body["store"] is False
    assert "instructions" not in sent.body  # not carried over, as OpenAI's are not
    turns = [(item["role"], item["content"]) for item in sent.body["input"]]
    assert [role for role, _ in turns] == ["user", "assistant", "user"]
    assert (turns[0][1], turns[2][1]) == ("I am Ada.", "Who am I?")
    assert turns[1][1][0]["text"] == "Hi Ada."  # the stored output item, sent back as the upstream gave it
    assert StoredResponse.objects.get(id=second.id).parent_id == first.id


def test_flag_on_sends_function_tools_in_the_responses_shape(client, fake_upstream):
    local_route("box", responses_api=True)
    fake_upstream.configure(structured={"city": "Paris"}, usage=USAGE)
    response = client.responses.create(
        model="box", input="Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="required"
    )
    [call] = response.output
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "Paris"})
    sent = fake_upstream.last_request
    assert sent.path == "/v1/responses"
    assert sent.body["tools"] == [WEATHER_TOOL] and sent.body["tool_choice"] == "required"


def test_each_fallback_route_decides_for_itself(client, fake_upstream):
    """The primary route's server has a Responses endpoint and keeps failing; its fallback's server has none."""
    small = local_route("small", responses_api=False, model="qwen3-small")
    local_route("box", responses_api=True, fallback=small)
    fake_upstream.configure(reply="from the fallback", usage=USAGE)
    fake_upstream.fail_next("500", times=3, model="qwen3")  # every attempt djllm makes on the primary
    response = client.responses.create(model="box", input="Hello")
    assert response.output_text == "from the fallback"
    assert [(r.path, r.body["model"], r.status) for r in fake_upstream.requests] == [
        ("/v1/responses", "qwen3", 500),
        ("/v1/responses", "qwen3", 500),
        ("/v1/responses", "qwen3", 500),
        ("/v1/chat/completions", "qwen3-small", 200),
    ]
    [record] = records(1)
    assert_record(record, stream=False, model="qwen3-small")
    assert record.attempts == 4
