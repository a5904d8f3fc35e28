"""`POST /v1/responses`, `GET` and `DELETE /v1/responses/{id}` driven by the unmodified `openai` SDK against a live
djllm (uvicorn + the lean ASGI stack) and the fake upstream: OpenAI and Claude models translated both ways, the
Responses stream events, function tools, structured output, stored responses and their continuation, errors as the
SDK's own classes, and the one usage row per request. OpenAI models go to the upstream's own Responses endpoint
(statelessly: the whole conversation, `store` false); Claude models and local ones without a Responses route
(tests/test_responses_local_routes.py) through the chat translation."""

import json
import time
from decimal import Decimal

import httpx
import openai
import pytest

from bench.fake_upstream import Usage as FakeUsage
from llm.models import StoredResponse, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

CLAUDE = "claude-haiku-4-5"
GPT = "gpt-4o-mini"
# Each provider's own convention: Anthropic's input excludes cache reads and writes, OpenAI's includes its cache reads.
CLAUDE_USAGE = FakeUsage(input_tokens=300, output_tokens=100, cached_tokens=1000, cache_write_tokens=500)
CLAUDE_COST = Decimal("0.001525")  # 300 x $1 + 1000 x $0.10 (read) + 500 x $1.25 (write) + 100 x $5, per million
GPT_USAGE = FakeUsage(input_tokens=1000, output_tokens=200, cached_tokens=400, reasoning_tokens=50)
GPT_COST = Decimal("0.000240")  # 600 x $0.15 + 400 x $0.075 + 200 x $0.60, per million tokens
# What the Responses usage says: input tokens include every cached (read or written) prompt token.
EXPECTED = {
    GPT: (GPT_USAGE, 1000, 400, 200, 50, GPT_COST),
    CLAUDE: (CLAUDE_USAGE, 1800, 1000, 100, 0, CLAUDE_COST),
}
BOTH = pytest.mark.parametrize("model", [GPT, CLAUDE])
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PIXEL_URL = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
def client(live_djllm, token, prices):
    return openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key=token[1], max_retries=0, timeout=10)


def records(n: int, timeout: float = 5.0) -> list[UsageRecord]:
    """A stream's usage row is written as it ends, which may be just after the client saw the end."""
    deadline = time.monotonic() + timeout
    while UsageRecord.objects.count() < n and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # and no second row follows
    return list(UsageRecord.objects.order_by("id"))


def assert_usage(usage, model: str) -> None:
    _, input_tokens, cached, output, reasoning, _ = EXPECTED[model]
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (input_tokens, cached)
    assert (usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (output, reasoning)
    assert usage.total_tokens == input_tokens + output


def assert_record(record: UsageRecord, model: str, *, stream: bool) -> None:
    *_, cost = EXPECTED[model]
    assert (record.endpoint, record.status, record.stream, record.upstream_model) == ("responses", "ok", stream, model)
    assert record.cost_usd == cost and record.usage_estimated is False


@BOTH
def test_create_translates_the_request_and_the_answer(client, fake_upstream, model):
    fake_upstream.configure(reply="Bonjour !", usage=EXPECTED[model][0])
    response = client.responses.create(
        model=model,
        instructions="Answer in French.",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": PIXEL_URL},
                ],
            }
        ],
        max_output_tokens=64,
        temperature=0.5,
        metadata={"ticket": "42"},
    )
    assert response.object == "response" and response.status == "completed" and response.id.startswith("resp_")
    assert response.output_text == "Bonjour !" and response.model == model
    [item] = response.output
    assert (item.type, item.role, item.content[0].type) == ("message", "assistant", "output_text")
    assert response.metadata == {"ticket": "42"} and response.instructions == "Answer in French."
    assert_usage(response.usage, model)

    sent = fake_upstream.last_request
    if model == GPT:
        assert sent.path == "/v1/responses" and sent.body["max_output_tokens"] == 64
        assert (sent.body["instructions"], sent.body["temperature"]) == ("Answer in French.", 0.5)
        assert sent.body["input"] == [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": PIXEL_URL},
                ],
            }
        ]
        assert sent.body["store"] is False and sent.body["model"] == GPT
    else:
        assert sent.path == "/v1/messages" and sent.body["system"] == "Answer in French."
        assert sent.body["max_tokens"] == 64 and sent.body["temperature"] == 0.5
        [turn] = sent.body["messages"]
        assert [block["type"] for block in turn["content"]] == ["text", "image"]
    assert "metadata" not in sent.body  # djllm keeps it with the response
    [record] = records(1)
    assert_record(record, model, stream=False)


@BOTH
def test_stream_relays_text_deltas_and_the_final_response(client, fake_upstream, model):
    fake_upstream.configure(reply="one two three four", chunks=4, usage=EXPECTED[model][0])
    with client.responses.stream(model=model, input="Count to four") as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == "one two three four" and len(deltas) == 4  # relayed chunk by chunk
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.output_text == "one two three four" and final.status == "completed"
    sent = fake_upstream.last_request
    assert (sent.path, sent.stream) == ("/v1/responses" if model == GPT else "/v1/messages", True)
    assert_usage(final.usage, model)
    [record] = records(1)
    assert_record(record, model, stream=True)
    assert StoredResponse.objects.get(id=final.id).body["output"][0]["content"][0]["text"] == "one two three four"


def test_stream_events_are_the_responses_ones(live_djllm, token, prices, fake_upstream):
    fake_upstream.configure(reply="ab", chunks=2, usage=GPT_USAGE)
    body = {"model": GPT, "input": "x", "stream": True}
    headers = {"Authorization": f"Bearer {token[1]}"}
    with httpx.stream("POST", f"{live_djllm.url}/v1/responses", json=body, headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert events == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [d["type"] for d in data] == events and [d["sequence_number"] for d in data] == list(range(10))
    assert data[6]["text"] == "ab" and data[8]["item"]["status"] == "completed"


@BOTH
def test_function_tool_round_trip(client, fake_upstream, model):
    fake_upstream.configure(structured={"city": "Paris"}, usage=FakeUsage(input_tokens=50, output_tokens=10))
    first = client.responses.create(
        model=model,
        input="Weather in Paris?",
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    [call] = first.output
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "Paris"})
    sent = fake_upstream.last_request.body
    if model == GPT:
        assert sent["tools"] == [WEATHER_TOOL] and sent["tool_choice"] == {"type": "function", "name": "get_weather"}
    else:
        assert sent["tools"][0]["name"] == "get_weather" and sent["tool_choice"] == {
            "type": "tool",
            "name": "get_weather",
        }

    fake_upstream.configure(reply="It is sunny in Paris.")
    second = client.responses.create(
        model=model,
        tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24C"},
        ],
    )
    assert second.output_text == "It is sunny in Paris."
    if model == GPT:
        sent = fake_upstream.last_request.body["input"]
        assert sent[1] == {
            "type": "function_call",
            "call_id": call.call_id,
            "name": "get_weather",
            "arguments": call.arguments,
        }
        assert sent[2] == {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 24C"}
    else:
        sent = fake_upstream.last_request.body["messages"]
        assert sent[1]["content"][0] == {
            "type": "tool_use",
            "id": call.call_id,
            "name": "get_weather",
            "input": {"city": "Paris"},
        }
        assert sent[2]["content"][0]["type"] == "tool_result" and sent[2]["content"][0]["tool_use_id"] == call.call_id
    assert [r.endpoint for r in records(2)] == ["responses", "responses"]


@BOTH
def test_streamed_function_call_arrives_as_argument_deltas(client, fake_upstream, model):
    fake_upstream.configure(structured={"city": "Oslo"}, chunks=3)
    with client.responses.stream(model=model, input="Weather?", tools=[WEATHER_TOOL], tool_choice="required") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    [call] = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Oslo"}


@BOTH
def test_structured_output_with_a_json_schema(client, fake_upstream, model):
    fake_upstream.configure(structured={"name": "Ada", "age": 36})
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=model,
        input="Ada Lovelace, 36",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text) == {"name": "Ada", "age": 36}
    assert response.text.format.type == "json_schema"
    sent = fake_upstream.last_request.body
    if model == GPT:
        assert sent["text"] == {"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}}
    else:
        assert sent["tools"][0]["input_schema"] == schema  # Claude answers through a forced tool


def turns(sent: dict) -> list[tuple[str, str]]:
    """(role, text) of each turn the upstream got: Responses input items, or Anthropic messages."""
    if "input" in sent:
        assert "previous_response_id" not in sent and sent["store"] is False  # stateless upstream
        assert "instructions" not in sent
    messages = sent.get("input") or sent.get("messages")
    text = [m["content"] if isinstance(m["content"], str) else m["content"][0]["text"] for m in messages]
    return [(m["role"], t) for m, t in zip(messages, text, strict=True)]


@BOTH
def test_previous_response_id_rebuilds_the_conversation(client, fake_upstream, model):
    fake_upstream.configure(reply="Hi Ada.")
    first = client.responses.create(model=model, instructions="Be brief.", input="I am Ada.")
    fake_upstream.configure(reply="You are Ada.")
    second = client.responses.create(model=model, previous_response_id=first.id, input="Who am I?")
    assert second.output_text == "You are Ada." and second.previous_response_id == first.id
    assert turns(fake_upstream.last_request.body) == [
        ("user", "I am Ada."),
        ("assistant", "Hi Ada."),
        ("user", "Who am I?"),
    ]  # the instructions are not carried over, as OpenAI's are not
    # A branch: the first response continued again, without the second turn.
    fake_upstream.configure(reply="Bye.")
    client.responses.create(model=model, previous_response_id=first.id, input="Bye!")
    assert [role for role, _ in turns(fake_upstream.last_request.body)] == ["user", "assistant", "user"]
    assert StoredResponse.objects.get(id=second.id).parent_id == first.id


def test_get_and_delete_a_stored_response(client, live_djllm, make_token, token, fake_upstream):
    fake_upstream.configure(reply="kept")
    response = client.responses.create(model=GPT, input="x")
    again = client.responses.retrieve(response.id)
    assert again.id == response.id and again.output_text == "kept" and again.usage == response.usage

    deleted = client.responses.delete(response.id)
    assert deleted is None  # the SDK returns nothing for a 200
    assert not StoredResponse.objects.filter(id=response.id).exists()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.create(model=GPT, input="y", previous_response_id=response.id)
    assert gone.value.param == "previous_response_id" and response.id in gone.value.message


def test_store_false_keeps_nothing(client, fake_upstream):
    response = client.responses.create(model=GPT, input="x", store=False)
    assert response.store is False and not StoredResponse.objects.exists()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_another_users_response_is_a_404(client, live_djllm, fake_upstream, django_user_model, make_token):
    response = client.responses.create(model=GPT, input="mine")
    stranger = django_user_model.objects.create_user(username="stranger", password="x")
    theirs = openai.OpenAI(
        base_url=f"{live_djllm.url}/v1", api_key=make_token(user=stranger, name="t", scopes=["llm"])[1], max_retries=0
    )
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.create(model=GPT, input="y", previous_response_id=response.id)
    assert StoredResponse.objects.filter(id=response.id).exists()


@BOTH
def test_an_identical_request_at_temperature_0_is_answered_from_the_cache(client, fake_upstream, model):
    fake_upstream.configure(reply="cached answer", usage=EXPECTED[model][0])
    first = client.responses.create(model=model, input="Same question", temperature=0)
    raw = client.responses.with_raw_response.create(model=model, input="Same question", temperature=0)
    second = raw.parse()
    assert raw.headers["X-Djllm-Cached"] == "true" and len(fake_upstream.requests) == 1
    assert second.output_text == "cached answer" and second.id != first.id  # a response of its own
    assert_usage(second.usage, model)
    paid, cached = records(2)
    assert (paid.status, cached.status, cached.endpoint) == ("ok", "cached", "responses")
    assert cached.cost_usd == 0 and cached.saved_usd == EXPECTED[model][-1]


def test_a_local_model_goes_through_chat_completions(client, fake_upstream):
    fake_upstream.configure(reply="local hello", usage=FakeUsage(input_tokens=7, output_tokens=3))
    response = client.responses.create(model="local/llama3.2", instructions="Be kind.", input="Hi")
    assert response.output_text == "local hello" and response.usage.input_tokens == 7
    sent = fake_upstream.last_request
    assert (sent.path, sent.body["model"]) == ("/v1/chat/completions", "llama3.2")
    assert sent.body["messages"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    [record] = records(1)
    assert (record.endpoint, record.provider, record.input_tokens, record.output_tokens) == ("responses", "local", 7, 3)


def test_errors_are_the_sdks_own_classes(client, live_djllm, token, make_token, fake_upstream):
    anonymous = openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key="djl_nope_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.responses.create(model=GPT, input="x")
    no_llm = make_token(user=token[0].user, name="calendar only", scopes=["calendar"])[1]
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key=no_llm, max_retries=0).responses.create(
            model=GPT, input="x"
        )
    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model="no-such-model", input="x")
    assert "no-such-model" in unknown.value.message
    with pytest.raises(openai.BadRequestError) as tool:
        client.responses.create(model=GPT, input="x", tools=[{"type": "web_search"}])
    assert "tools.0.type" in json.dumps(tool.value.body)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=GPT, input=[{"type": "item_reference", "id": "x"}])
    assert fake_upstream.requests == []

    fake_upstream.fail_next("500", times=3)  # every retry djllm makes
    with pytest.raises(openai.InternalServerError) as failed:
        client.responses.create(model=CLAUDE, input="x")
    assert failed.value.status_code == 502
    [record] = [r for r in records(2) if r.status != "client_error"]
    assert (record.endpoint, record.status, record.http_status) == ("responses", "upstream_error", 502)


def test_upstream_failure_mid_stream_is_an_error_then_response_failed(client, fake_upstream):
    fake_upstream.configure(reply="a b c d", chunks=4)
    fake_upstream.fail_next("stream_error", after_chunks=2)
    with client.responses.stream(model=GPT, input="x") as stream:
        kinds = [event.type for event in stream]
    assert kinds[-2:] == ["error", "response.failed"]
    [record] = records(1)
    assert (record.endpoint, record.status, record.stream) == ("responses", "upstream_error", True)
    assert not StoredResponse.objects.exists()
