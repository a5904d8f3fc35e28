"""`POST /v1/responses` with `stream: true` on a route to an upstream Responses endpoint (an OpenAI model; a local
route with `responses_api` on): every event the upstream sends is relayed in its order, shape and numbering, the
reasoning summary, content-part and item events included; only the response object is djllm's (its id, the
client's `store`, `previous_response_id` and `metadata`). The unmodified `openai` SDK reads it; the stored
response, the usage row, an in-band upstream failure and the response cache's replay are checked too. Translated
streams (Claude, local without the flag) are tests/test_responses_api.py's and tests/test_responses_local_routes.py's.
"""

import json
import re
import time
from decimal import Decimal

import httpx
import openai
import pytest
from openai.types.responses import ResponseReasoningSummaryTextDeltaEvent

from bench.fake_upstream import Usage as FakeUsage
from llm import pricing, routing
from llm.models import ModelPrice, ModelRoute, StoredResponse, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

GPT = "gpt-4o-mini"
USAGE = FakeUsage(input_tokens=1000, output_tokens=200, cached_tokens=400, reasoning_tokens=50)
COST = Decimal("0.000240")  # 600 x $0.15 + 400 x $0.075 + 200 x $0.60, per million tokens
SUMMARY = "The user wants a count; four words will do."
# What the fake upstream streams for a text answer after a reasoning summary (chunks=2), in its order.
EXPECTED_TYPES = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
RESPONSE_EVENTS = ("response.created", "response.in_progress", "response.completed", "response.failed")


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


def sse(url: str, body: dict, headers: dict | None = None) -> tuple[httpx.Response, list[dict]]:
    """A stream's events as sent: each `data:` decoded, checked against its `event:` line."""
    with httpx.stream("POST", url, json=body, headers=headers or {}, timeout=10) as response:
        lines = [line for line in response.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    events = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert [event["type"] for event in events] == names
    return response, events


def alike(value) -> str:
    """`value` as JSON, the fake's per-request numbering in its ids made alike."""
    return re.sub(r"fake\d{8}", "fakeN", json.dumps(value, sort_keys=True))


def without_response(event: dict) -> str:
    """An event without its response object, the fake's per-request numbering in its item ids made alike."""
    return alike({key: value for key, value in event.items() if key != "response"})


def test_every_upstream_event_is_relayed_in_its_order_shape_and_numbering(live_djllm, token, prices, fake_upstream):
    fake_upstream.configure(reply="one two three four", chunks=2, usage=USAGE, reasoning_summary=SUMMARY)
    body = {"model": GPT, "input": "Count to four", "stream": True, "metadata": {"ticket": "7"}}
    headers = {"Authorization": f"Bearer {token[1]}"}
    answer, relayed = sse(f"{live_djllm.url}/v1/responses", body, headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    sent = fake_upstream.last_request.body
    assert sent["store"] is False and "metadata" not in sent  # the upstream is called statelessly

    _, upstream = sse(f"{fake_upstream.openai_base_url}/responses", sent)  # what the upstream streams for it
    assert [event["type"] for event in relayed] == [event["type"] for event in upstream] == EXPECTED_TYPES
    assert [event["sequence_number"] for event in relayed] == list(range(len(EXPECTED_TYPES)))
    assert [without_response(event) for event in relayed] == [without_response(event) for event in upstream]

    final = relayed[-1]["response"]
    response_id = final["id"]
    assert response_id.startswith("resp_") and "fake" not in response_id
    own = ("id", "store", "metadata", "previous_response_id", "created_at")  # djllm's, or of another request
    for event, theirs in zip(relayed, upstream, strict=True):
        if event["type"] in RESPONSE_EVENTS:
            mine = event["response"]
            assert (mine["id"], mine["store"], mine["metadata"]) == (response_id, True, {"ticket": "7"})
            assert mine["previous_response_id"] is None and theirs["response"]["store"] is False
            assert alike({k: v for k, v in mine.items() if k not in own}) == alike(
                {k: v for k, v in theirs["response"].items() if k not in own}
            )
    deltas = [event["delta"] for event in relayed if event["type"] == "response.reasoning_summary_text.delta"]
    assert "".join(deltas) == SUMMARY
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]

    stored = StoredResponse.objects.get(id=response_id)
    assert stored.body == final and stored.output == final["output"]
    got = httpx.get(f"{live_djllm.url}/v1/responses/{response_id}", headers=headers).json()
    assert got["id"] == response_id and got["output"] == final["output"] and got["metadata"] == {"ticket": "7"}
    [record] = records(1)
    assert (record.endpoint, record.status, record.stream, record.provider) == ("responses", "ok", True, "openai")
    assert (record.input_tokens, record.cached_input_tokens, record.output_tokens, record.reasoning_tokens) == (
        1000,
        400,
        200,
        50,
    )
    assert record.cost_usd == COST and record.usage_estimated is False


def test_a_tool_schema_with_an_integer_beyond_64_bits_is_relayed_intact(live_djllm, token, prices, fake_upstream):
    huge = 2**70  # JSON allows it; the upstream echoes the tools in its response object
    tool = {
        "type": "function",
        "name": "count_to",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer", "maximum": huge}}},
    }
    body = {"model": GPT, "input": "Count", "stream": True, "tools": [tool]}
    answer, relayed = sse(f"{live_djllm.url}/v1/responses", body, {"Authorization": f"Bearer {token[1]}"})
    assert answer.status_code == 200
    assert fake_upstream.last_request.body["tools"][0]["parameters"]["properties"]["n"]["maximum"] == huge
    assert [event["type"] for event in relayed][-1] == "response.completed"
    for event in relayed:
        if event["type"] in RESPONSE_EVENTS:
            assert event["response"]["tools"][0]["parameters"]["properties"]["n"]["maximum"] == huge


def test_the_sdks_stream_helper_reads_the_relayed_events(client, fake_upstream):
    fake_upstream.configure(reply="one two", chunks=2, usage=USAGE, reasoning_summary=SUMMARY)
    with client.responses.stream(model=GPT, input="Count to two") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [event.type for event in events] == EXPECTED_TYPES
    assert [event.sequence_number for event in events] == list(range(len(EXPECTED_TYPES)))
    summary = [event for event in events if isinstance(event, ResponseReasoningSummaryTextDeltaEvent)]
    assert "".join(event.delta for event in summary) == SUMMARY
    assert final.output_text == "one two" and [item.type for item in final.output] == ["reasoning", "message"]
    assert final.id == events[0].response.id and "fake" not in final.id
    assert (final.usage.input_tokens, final.usage.input_tokens_details.cached_tokens) == (1000, 400)
    assert (final.usage.output_tokens, final.usage.output_tokens_details.reasoning_tokens) == (200, 50)
    kept = client.responses.retrieve(final.id)
    assert kept.id == final.id and kept.output_text == "one two" and kept.output[0].summary[0].text == SUMMARY
    [record] = records(1)
    assert (record.status, record.cost_usd, record.usage_estimated) == ("ok", COST, False)


def test_create_with_stream_true_and_a_continuation(client, fake_upstream):
    fake_upstream.configure(reply="Hi Ada.", chunks=2, reasoning_summary=SUMMARY)
    first = list(client.responses.create(model=GPT, input="I am Ada.", stream=True))
    assert [event.type for event in first] == EXPECTED_TYPES
    first_id = first[-1].response.id
    fake_upstream.configure(reply="You are Ada.", chunks=2)
    second = list(
        client.responses.create(model=GPT, input="Who am I?", previous_response_id=first_id, store=False, stream=True)
    )
    created, completed = second[0].response, second[-1].response
    assert created.previous_response_id == first_id and created.store is False and completed.id == created.id
    assert completed.output_text == "You are Ada." and completed.id != first_id
    sent = fake_upstream.last_request.body
    assert "previous_response_id" not in sent and sent["store"] is False
    # The whole conversation, statelessly: the reasoning item is the upstream's own and is not sent back.
    assert [(item.get("type", "message"), item.get("role")) for item in sent["input"]] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert not StoredResponse.objects.filter(id=completed.id).exists()  # store false
    assert StoredResponse.objects.filter(id=first_id).exists()


def test_an_upstream_error_event_mid_stream_is_relayed_then_the_response_fails(client, fake_upstream):
    fake_upstream.configure(reply="a b c d", chunks=4)
    fake_upstream.fail_next("stream_error", after_chunks=2, message="The model crashed.")
    events = list(client.responses.create(model=GPT, input="x", stream=True))
    kinds = [event.type for event in events]
    assert kinds[-4:] == ["response.output_text.delta", "response.output_text.delta", "error", "response.failed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))  # djllm's numbered on
    error, failed = events[-2], events[-1]
    assert (error.code, error.message) == ("server_error", "The model crashed.")  # the upstream's, as sent
    assert failed.response.id == events[0].response.id and failed.response.status == "failed"
    assert "The model crashed." in failed.response.error.message
    [record] = records(1)
    assert (record.endpoint, record.status, record.stream, record.http_status) == (
        "responses",
        "upstream_error",
        True,
        200,
    )
    assert record.error_code == "upstream_error" and "The model crashed." in record.error_message
    assert not StoredResponse.objects.exists()


def test_an_upstream_response_failed_is_relayed_as_sent(client, fake_upstream):
    fake_upstream.configure(reply="a b c d", chunks=4)
    fake_upstream.fail_next("stream_failed", after_chunks=1, message="Out of capacity.")
    events = list(client.responses.create(model=GPT, input="x", stream=True))
    assert [event.type for event in events][-2:] == ["response.output_text.delta", "response.failed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    failed = events[-1].response
    assert failed.id == events[0].response.id and "fake" not in failed.id and failed.store is True
    assert (failed.status, failed.error.code, failed.error.message) == ("failed", "server_error", "Out of capacity.")
    [record] = records(1)
    assert (record.status, record.error_code) == ("upstream_error", "upstream_error")
    assert "Out of capacity." in record.error_message
    assert not StoredResponse.objects.exists()


def test_a_stream_cut_off_ends_with_djllms_error_and_response_failed(client, fake_upstream):
    fake_upstream.configure(reply="a b c d", chunks=4, reasoning_summary=SUMMARY)
    fake_upstream.fail_next("stream_cut", after_chunks=1)
    events = list(client.responses.create(model=GPT, input="x", stream=True))
    assert [event.type for event in events][-3:] == ["response.output_text.delta", "error", "response.failed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    failed = events[-1].response
    assert failed.id == events[0].response.id and failed.status == "failed"
    assert [item.type for item in failed.output] == ["reasoning"]  # the items the upstream finished
    [record] = records(1)
    assert (record.status, record.usage_estimated) == ("upstream_error", True)


def test_the_cache_replays_the_relayed_events(live_djllm, token, prices, fake_upstream):
    fake_upstream.configure(reply="cached answer", chunks=2, usage=USAGE, reasoning_summary=SUMMARY)
    body = {"model": GPT, "input": "Same question", "temperature": 0, "stream": True}
    headers = {"Authorization": f"Bearer {token[1]}"}
    paid, first = sse(f"{live_djllm.url}/v1/responses", body, headers)
    cached, second = sse(f"{live_djllm.url}/v1/responses", body, headers)
    assert len(fake_upstream.requests) == 1 and cached.headers["X-Djllm-Cached"] == "true"
    assert "X-Djllm-Cached" not in paid.headers or paid.headers["X-Djllm-Cached"] != "true"
    assert [without_response(event) for event in second] == [without_response(event) for event in first]
    first_id, second_id = first[-1]["response"]["id"], second[-1]["response"]["id"]
    assert second_id != first_id and {event["response"]["id"] for event in second if "response" in event} == {second_id}
    assert second[-1]["response"]["usage"] == first[-1]["response"]["usage"]
    assert StoredResponse.objects.get(id=second_id).body == second[-1]["response"]
    assert (
        openai.OpenAI(base_url=f"{live_djllm.url}/v1", api_key=token[1], max_retries=0)
        .responses.retrieve(second_id)
        .output_text
        == "cached answer"
    )
    ok, hit = records(2)
    assert (ok.status, hit.status, hit.stream) == ("ok", "cached", True)
    assert hit.cost_usd == 0 and hit.saved_usd == COST and hit.input_tokens == 1000


def test_a_local_route_with_the_responses_api_relays_too(client, fake_upstream):
    ModelPrice.objects.create(
        provider="local",
        model="qwen3",
        input_per_mtok=Decimal("0.10"),
        output_per_mtok=Decimal("0.40"),
        cached_input_per_mtok=Decimal("0.05"),
        effective_from="2025-01-01",
    )
    pricing.prices_changed()
    route = ModelRoute(alias="thinker", provider="local", upstream_model="qwen3", responses_api=True)
    route.full_clean()
    route.save()
    routing.routes_changed()
    fake_upstream.configure(reply="one two", chunks=2, usage=USAGE, reasoning_summary=SUMMARY)
    with client.responses.stream(model="thinker", input="Count") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [event.type for event in events] == EXPECTED_TYPES
    assert fake_upstream.last_request.path == "/v1/responses" and final.output_text == "one two"
    assert client.responses.retrieve(final.id).id == final.id
    [record] = records(1)
    assert (record.provider, record.upstream_model, record.status) == ("local", "qwen3", "ok")
    assert record.cost_usd == Decimal("0.000160")  # 600 x $0.10 + 400 x $0.05 + 200 x $0.40, per million
